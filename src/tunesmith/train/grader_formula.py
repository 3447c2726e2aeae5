"""A multi grader's `calculate_output`: arithmetic over its graders' rewards, checked and evaluated on Python's AST.

Allowed: numbers, the graders' names, + - * / ** (and unary - +), parentheses, and the functions min, max (two or
more arguments), abs, floor, ceil, exp, sqrt, log (one). Anything else — attribute access, indexing, other calls,
comparisons, strings — is refused when the grader is parsed, so evaluation only ever meets nodes it has checked;
nothing is passed to eval. Arithmetic is in floats: `10 ** 10 ** 10` overflows (an error) instead of building an
integer with ten billion digits.
"""
from __future__ import annotations

import ast
import difflib
import math
import operator
from dataclasses import dataclass

MAX_FORMULA_CHARS = 2000

# name -> (function, fewest arguments, most arguments or None)
FUNCTIONS = {"min": (min, 2, None), "max": (max, 2, None), "abs": (abs, 1, 1), "floor": (math.floor, 1, 1),
             "ceil": (math.ceil, 1, 1), "exp": (math.exp, 1, 1), "sqrt": (math.sqrt, 1, 1), "log": (math.log, 1, 1)}
BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.Pow: operator.pow}
UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
ALLOWED = "grader names, numbers, + - * / ** ( ) and " + ", ".join(FUNCTIONS)


class FormulaError(ValueError):
    """What is wrong with a formula (at parse) or with its value for one sample (at evaluation)."""


@dataclass(frozen=True)
class Formula:
    text: str
    tree: ast.expr

    def evaluate(self, values: dict[str, float]) -> float:
        """The formula's value for these rewards; FormulaError for a division by zero, log(0), an overflow."""
        try:
            result = evaluate_node(self.tree, values)
        except (ZeroDivisionError, OverflowError, ValueError) as exc:
            raise FormulaError(f"{exc} (rewards {values})") from None
        if not math.isfinite(result):
            raise FormulaError(f"gave {result} (rewards {values})")
        return result


def parse_formula(text: str, names: list[str]) -> Formula:
    """Check `text` against the allowed grammar and the graders' names; FormulaError says what to change."""
    if len(text) > MAX_FORMULA_CHARS:
        raise FormulaError(f"is {len(text)} characters long — keep it under {MAX_FORMULA_CHARS}")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
        check_node(tree, set(names))
    except SyntaxError as exc:
        raise FormulaError(f"does not parse: {exc.msg} at column {exc.offset} — use {ALLOWED}") from None
    except RecursionError:
        raise FormulaError("is nested too deeply — simplify it") from None
    return Formula(text, tree)


def check_node(node: ast.AST, names: set[str]) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise FormulaError(f"{ast.unparse(node)} is not a number — use {ALLOWED}")
    elif isinstance(node, ast.Name):
        if node.id not in names:
            near = difflib.get_close_matches(node.id, sorted(names), n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"the graders are {', '.join(sorted(names))}"
            raise FormulaError(f"unknown name {node.id!r} — {hint}")
    elif isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        check_node(node.left, names)
        check_node(node.right, names)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        check_node(node.operand, names)
    elif isinstance(node, ast.Call):
        check_call(node, names)
    elif isinstance(node, ast.Attribute):
        raise FormulaError(f"attribute access ({ast.unparse(node)}) is not allowed — use {ALLOWED}")
    else:
        raise FormulaError(f"{ast.unparse(node)!r} is not allowed — use {ALLOWED}")


def check_call(node: ast.Call, names: set[str]) -> None:
    called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
    if called not in FUNCTIONS:
        raise FormulaError(f"unknown function {called!r} — use one of {', '.join(FUNCTIONS)}")
    if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
        raise FormulaError(f"{called}() takes plain arguments, not keywords or *args")
    _, fewest, most = FUNCTIONS[called]
    if len(node.args) < fewest or (most is not None and len(node.args) > most):
        wanted = f"{fewest} or more" if most is None else str(fewest)
        raise FormulaError(f"{called}() takes {wanted} argument(s), got {len(node.args)}")
    for arg in node.args:
        check_node(arg, names)


def evaluate_node(node: ast.expr, values: dict[str, float]) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return float(values[node.id])
    if isinstance(node, ast.BinOp):
        result = BINARY[type(node.op)](evaluate_node(node.left, values), evaluate_node(node.right, values))
        if isinstance(result, complex):  # (-8.0) ** (1 / 3) is complex in Python
            raise ValueError("a negative number raised to a fractional power")
        return result
    if isinstance(node, ast.UnaryOp):
        return UNARY[type(node.op)](evaluate_node(node.operand, values))
    function = FUNCTIONS[node.func.id][0]
    return float(function(*(evaluate_node(arg, values) for arg in node.args)))
