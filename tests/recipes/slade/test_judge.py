"""Judging: the n-best rule, the three declaration settings, edit similarity and the retrieval baseline."""
import random

from slm.recipes.slade.generator import generate_one
from slm.recipes.slade.judge import Judge, Retrieval, edit_similarity, rename_function, return_zero


def _functions():
    struct = generate_one(random.Random(5), "struct")
    while not struct.fn.typedefs:  # a typedef'd struct: alone, its unit cannot even name the type
        struct = generate_one(random.Random(random.random()), "struct")
    loop = generate_one(random.Random(6), "array_reduce")
    return [{"fn": g.fn.to_dict(), "examples": g.examples, "family": g.family} for g in (struct, loop)]


def test_first_passing_candidate_counts_for_beam_not_top1():
    functions = _functions()
    judge = Judge(functions)
    good = functions[1]["fn"]["source"]
    bad = good.replace("return acc;", "return acc + 1;")
    verdict = judge.score(1, [bad, good])
    for setting in ("declarations", "none", "inferred"):
        assert verdict[setting].passed_top1 is False and verdict[setting].passed_any is True
        assert verdict[setting].status == "wrong_output"
    assert judge.score(1, [good])["none"].passed_top1


def test_declaration_settings_on_a_struct_function():
    functions = _functions()
    judge = Judge(functions)
    source = functions[0]["fn"]["source"]
    verdict = judge.score(0, [source], count_rescue=True)
    assert verdict["declarations"].passed_top1  # with the reference's own struct and typedef
    assert verdict["none"].status == "compile_error"  # the typedef name is unknown alone
    assert verdict["inferred"].compiled_top1  # type inference supplies a struct that compiles
    assert judge.rescued["needed"] == 1 and judge.rescued["compile"] == 1


def test_edit_similarity_and_renaming():
    a = "int f(int x) { return x + 1; }"
    assert edit_similarity(a, a) == 1.0
    assert 0 < edit_similarity(a, a.replace("+ 1", "- 2")) < 1
    assert edit_similarity("", "") == 1.0
    assert rename_function("int f(int f_x) { return f(f_x); }", "f", "g") == "int g(int f_x) { return g(f_x); }"


def test_retrieval_finds_the_same_assembly_and_renames_it():
    rows = [{"isa": "x86_64", "opt": "O0", "asm": "foo:\nmovl $1, %eax\nret", "c": "int foo(void) { return 1; }"},
            {"isa": "x86_64", "opt": "O0", "asm": "bar:\naddl %esi, %edi\nmovl %edi, %eax\nret",
             "c": "int bar(int a, int b) { return a + b; }"}]
    retrieval = Retrieval(rows)
    query = {"isa": "x86_64", "opt": "O0", "asm": "baz:\naddl %esi, %edi\nmovl %edi, %eax\nret"}
    assert retrieval.candidates(query, 1) == ["int baz(int a, int b) { return a + b; }"]
    assert retrieval.candidates({**query, "opt": "O3"}, 1) == []  # only the query's own target


def test_return_zero_baseline_compiles_with_the_prototype():
    functions = _functions()
    judge = Judge(functions)
    assert judge.score(1, [return_zero(functions[1]["fn"])])["none"].compiled_top1
