"""No function in training/ is longer than 80 lines (split it into named helpers instead)."""

import ast
from pathlib import Path

TRAINING = Path(__file__).resolve().parents[2] / "training"
LIMIT = 80


def test_no_function_in_training_is_over_80_lines():
    long = []
    for path in sorted(TRAINING.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LIMIT:
                    long.append(f"{path.relative_to(TRAINING.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
