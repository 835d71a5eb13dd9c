"""Type inference: out-of-context types and names get declarations, so the function compiles alone."""
from slm.recipes.slade.typeinfer import diagnose, infer_declarations


def test_stub_using_an_undeclared_struct_compiles_after_inference():
    stub = "int area(struct rect *r, int k) {\n  r->w = r->w * k;\n  return r->w * r->h;\n}\n"
    assert diagnose(stub)[0] is False
    inferred = infer_declarations(stub)
    assert inferred.missing["structs"] == ["rect"]
    assert "struct rect {\n    int w;\n    int h;\n};" in inferred.declarations
    assert diagnose(stub, inferred.declarations)[0] is True


def test_typedef_names_fields_pointers_and_floating_members():
    stub = "double f(acc_t *a, node_t n) {\n  a->mean = a->sum / 2.0;\n  return a->mean + a->data[1];\n}\n"
    inferred = infer_declarations(stub)
    assert inferred.missing["types"] == ["acc_t", "node_t"]
    assert "typedef struct acc_t acc_t;" in inferred.declarations
    assert "double mean;" in inferred.declarations and "double sum;" in inferred.declarations
    assert "int *data;" in inferred.declarations
    assert "typedef int node_t;" in inferred.declarations  # never dereferenced: a scalar stand-in
    assert diagnose(stub, inferred.declarations)[0] is True


def test_undeclared_functions_and_identifiers():
    stub = "int g(int x) { return helper(x, 2) + LIMIT; }\n"
    inferred = infer_declarations(stub)
    assert inferred.missing["functions"] == ["helper"] and inferred.missing["identifiers"] == ["LIMIT"]
    assert diagnose(stub, inferred.declarations)[0] is True


def test_nothing_to_infer_for_a_complete_function_and_syntax_errors_stay_errors():
    assert not infer_declarations("int id(int x) { return x; }\n").needed
    broken = "int h(int x) { return x +; }\n"
    assert diagnose(broken, infer_declarations(broken).declarations)[0] is False
