"""For the README's walk-through only: fill a coding file from `annotate sample` with the shipped gold labels,
as a human coder would fill it by hand. Usage: python examples/code_from_gold.py CODING.csv [GOLD.csv]"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def main() -> None:
    coding_path = Path(sys.argv[1])
    gold_path = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("gold.csv")
    if gold_path.is_absolute() and gold_path.is_relative_to(Path.cwd()):
        gold_path = gold_path.relative_to(Path.cwd())
    coding = pd.read_csv(coding_path, dtype=str, keep_default_na=False)
    gold = pd.read_csv(gold_path, dtype=str, keep_default_na=False)
    gold["round"] = gold["round"].str.replace(r"\.0$", "", regex=True)
    known = gold.set_index(["chat_id", "round", "variable"])["value"].to_dict()
    keys = zip(coding["chat_id"], coding["round"], coding["variable"], strict=True)
    coding["value"] = [known.get(key, "") for key in keys]
    coding["annotator"] = "author"
    missing = int((coding["value"] == "").sum())
    coding.to_csv(coding_path, index=False)
    print(f"{coding_path}: {len(coding) - missing} items coded from {gold_path}, {missing} not in it")


if __name__ == "__main__":
    main()
