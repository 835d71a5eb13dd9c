import pytest

from slm.io import atomic_directory, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    f = tmp_path / "a" / "x.txt"
    atomic_write_text(f, "one")
    atomic_write_text(f, "two")
    assert f.read_text() == "two"
    assert [p.name for p in f.parent.iterdir()] == ["x.txt"]


def test_atomic_directory_keeps_old_on_failure(tmp_path):
    d = tmp_path / "ckpt"
    with atomic_directory(d) as tmp:
        (tmp / "w").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(d) as tmp:
            (tmp / "w").write_text("half")
            raise KeyboardInterrupt
    assert (d / "w").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    with atomic_directory(d) as tmp:
        (tmp / "w").write_text("new")
    assert (d / "w").read_text() == "new"
