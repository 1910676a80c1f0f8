"""Execute the notebooks in place (outputs and plots kept), as `make notebooks` does.

Usage: python notebooks/execute_all.py [NAME.ipynb ...]   (default: every notebook here)
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def main(names: list[str]) -> None:
    paths = [HERE / n for n in names] if names else sorted(HERE.glob("*.ipynb"))
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(HERE)}}).execute()
        tmp = path.with_suffix(".ipynb.tmp")
        nbformat.write(nb, tmp)
        tmp.replace(path)  # never a half-written notebook
        print(f"executed {path.name}")


if __name__ == "__main__":
    main(sys.argv[1:])
