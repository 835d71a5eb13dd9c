import pytest

from slm.errors import ConfigError
from slm.teach import Request
from slm.teach.settings import TeacherSection, open_teacher


def test_scripted_teacher_answers_through_the_client_and_its_cache(tmp_path):
    asked = []

    def answer(body):
        asked.append(body)
        return body["messages"][-1]["content"].upper()

    request = Request(messages=[{"role": "user", "content": "two words"}], max_tokens=8, seed=0)
    with open_teacher(TeacherSection(kind="scripted"), cache=tmp_path / "c.sqlite", scripted=answer) as teacher:
        assert teacher.ask(request).text == "TWO WORDS"
        assert teacher.stats.completion_tokens == 2
    with open_teacher(TeacherSection(kind="scripted"), cache=tmp_path / "c.sqlite", scripted=answer) as teacher:
        again = teacher.ask(request)
    assert again.text == "TWO WORDS" and again.cached and len(asked) == 1


def test_scripted_teacher_without_an_answer_function_echoes(tmp_path):
    with open_teacher(TeacherSection(kind="scripted"), cache=None) as teacher:
        text = teacher.ask(Request(messages=[{"role": "user", "content": "hi"}], max_tokens=4)).text
    assert text == "echo: hi"


@pytest.mark.parametrize("section, message", [
    (TeacherSection(kind="remote"), "teacher.kind must be one of local, endpoint, scripted"),
    (TeacherSection(kind="endpoint", base_url="http://x/v1"), "needs teacher.base_url and teacher.model"),
])
def test_bad_teacher_sections_are_one_line_errors(section, message):
    with pytest.raises(ConfigError, match=message):
        with open_teacher(section, cache=None):
            pass
