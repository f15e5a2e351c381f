"""For the README's walk-through only: fill a coding file from `annotate sample` with the shipped gold labels,
as a human coder would fill it by hand. Usage: python examples/code_from_gold.py CODING.csv [GOLD.csv]"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from annotate.runs.outputs import undo_formula_guard

USAGE = "usage: python examples/code_from_gold.py CODING.csv [GOLD.csv]"


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(USAGE, file=sys.stderr)
        return 2
    coding_path = Path(argv[0])
    gold_path = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("gold.csv")
    if gold_path.is_absolute() and gold_path.is_relative_to(Path.cwd()):
        gold_path = gold_path.relative_to(Path.cwd())
    try:
        coding = pd.read_csv(coding_path, dtype=str, keep_default_na=False)
        gold = pd.read_csv(gold_path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, table, path in (("coding file", coding, coding_path), ("gold", gold, gold_path)):
        lacking = [c for c in ("chat_id", "round", "variable") if c not in table.columns]
        if lacking:
            print(f"error: {path}: the {name} has no column {', '.join(lacking)}", file=sys.stderr)
            return 1
    gold["round"] = gold["round"].str.replace(r"\.0$", "", regex=True)
    known = gold.set_index(["chat_id", "round", "variable"])["value"].to_dict()
    chats = [undo_formula_guard(c) for c in coding["chat_id"]]  # the coding file guards ids like '=1+1
    keys = zip(chats, coding["round"], coding["variable"], strict=True)
    coding["value"] = [known.get(key, "") for key in keys]
    coding["annotator"] = "author"
    missing = int((coding["value"] == "").sum())
    coding.to_csv(coding_path, index=False)
    print(f"{coding_path}: {len(coding) - missing} items coded from {gold_path}, {missing} not in it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
