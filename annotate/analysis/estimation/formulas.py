"""Regression formulas of ``annotate estimate``: data, never code.

formulaic parses a formula and would evaluate each factor as Python, with numpy and the caller's
names in reach. Here every factor is checked first against what a formula needs: data columns,
numbers and quoted levels, arithmetic, ``C()`` and ``I()``, a few transforms (``log``, ``exp``, ``sqrt``,
``abs``, ``center``, ``scale``, ``standardize``, ``poly`` and their ``np.`` forms) and contrasts.
Anything else, attribute access above all, is refused in one line before anything runs, and the
matrix is built with a context that holds only those transforms.
"""

from __future__ import annotations

import ast
from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy.linalg import null_space

from annotate.errors import AnnotateError

RESERVED = ("value", "yhat", "inclusion_probability", "chat_id")
"""Columns the estimate uses itself: a covariate may not take these names."""
TRANSFORMS = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "log1p": np.log1p}
FORMULAIC_TRANSFORMS = ("C", "I", "center", "scale", "standardize", "poly", "lag", "Treatment", "Sum", "Poly")
NAMESPACES = {"np": set(TRANSFORMS), "contr": {"treatment", "sum", "helmert", "poly", "diff"}}
MAX_POWER = 10
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd, ast.FloorDiv, ast.Mod)
_CONTEXT = {**TRANSFORMS, "np": SimpleNamespace(**TRANSFORMS)}


def required_columns(rhs: str) -> list[str]:
    """The data columns a right-hand side names; one line for anything a formula may not do."""
    from formulaic import Formula

    if "|" in rhs:
        raise AnnotateError(f"formula '~ {rhs}': '|' (a multi-part formula) is not supported")
    try:
        terms = list(Formula(rhs))
    except Exception as e:  # formulaic raises several kinds of parse error
        raise AnnotateError(f"formula '~ {rhs}': {str(e).splitlines()[0]}") from None
    if not terms:
        raise AnnotateError(f"formula '~ {rhs}' has no terms (write '~ 1' for the mean)")
    names: set[str] = set()
    for term in terms:
        for factor in term.factors:
            names |= _factor_columns(str(factor.expr), rhs)
    reserved = sorted(names & set(RESERVED))
    if reserved:
        raise AnnotateError(
            f"formula '~ {rhs}' names '{reserved[0]}', a column the estimate uses itself; rename that covariate"
        )
    return sorted(names)


def _factor_columns(expr: str, rhs: str) -> set[str]:
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        if expr.isidentifier() or expr.replace(".", "", 1).isdigit():
            return {expr} if expr.isidentifier() else set()
        raise AnnotateError(f"formula '~ {rhs}': cannot read '{expr}'") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            _check_call(node, expr, rhs)
        elif isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Name) and node.attr in NAMESPACES.get(node.value.id, set())):
                raise AnnotateError(f"formula '~ {rhs}': '{expr}' reaches into an object; formulas may not")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            exponent = node.right
            if not (isinstance(exponent, ast.Constant) and isinstance(exponent.value, int | float)):
                raise AnnotateError(f"formula '~ {rhs}': '{expr}': a power must be a number")
            if abs(exponent.value) > MAX_POWER:
                raise AnnotateError(f"formula '~ {rhs}': '{expr}': powers above {MAX_POWER} are refused")
        elif isinstance(node, ast.Name):
            names |= set() if node.id in NAMESPACES else {node.id}
        elif not isinstance(node, _ALLOWED):
            raise AnnotateError(f"formula '~ {rhs}': '{expr}' uses {type(node).__name__}, which formulas may not")
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return names - called


_ALLOWED = (
    ast.Expression,
    ast.Constant,
    ast.BinOp,
    ast.UnaryOp,
    ast.List,
    ast.Tuple,
    ast.keyword,
    ast.Load,
    *_OPERATORS,
)


def _check_call(node: ast.Call, expr: str, rhs: str) -> None:
    func = node.func
    allowed = (isinstance(func, ast.Name) and func.id in (*TRANSFORMS, *FORMULAIC_TRANSFORMS)) or (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.attr in NAMESPACES.get(func.value.id, set())
    )
    if not allowed:
        name = ast.unparse(func)
        known = ", ".join([*FORMULAIC_TRANSFORMS[:2], *TRANSFORMS, *FORMULAIC_TRANSFORMS[2:7]])
        raise AnnotateError(f"formula '~ {rhs}': '{expr}' calls {name}(), which formulas may not (allowed: {known})")


def design_matrix(rhs: str, table: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The model matrix over ``table`` and its column names, built with only the allowed transforms in reach."""
    from formulaic import model_matrix

    required_columns(rhs)
    try:
        matrix = model_matrix(rhs, table, na_action="raise", context=_CONTEXT)
    except Exception as e:  # formulaic wraps data errors in several types
        raise AnnotateError(f"formula '~ {rhs}': {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    values = np.asarray(matrix, dtype=float)
    if not np.isfinite(values).all():
        raise AnnotateError(f"formula '~ {rhs}' gives values that are not finite numbers (log of 0 or less?)")
    return values, [str(c) for c in matrix.columns]


def why_collinear(x: np.ndarray, names: list[str]) -> str:
    """Which term the run's units cannot tell apart from the others, and why, in the researcher's words."""
    for j, name in enumerate(names):
        column = x[:, j]
        if name == "Intercept":
            continue
        if not column.any():
            return f"{name} is 0 in every unit of the run (an empty group?)"
        if np.ptp(column) == 0:
            return f"{name} has one value ({column[0]:g}) in every unit: it cannot be told from the intercept"
    involved = [names[j] for j in np.flatnonzero(np.abs(null_space(x)).max(axis=1) > 1e-9)]
    return f"the terms {', '.join(involved)} are collinear over the run's units (one is a combination of the others)"
