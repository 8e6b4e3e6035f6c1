"""What ships inside the package: the models (models/: `<name>.onnx` + `.onnx.json` +
`.safetensors`) and the paper's four datasets (data/*.json.gz, see data/README.md).

Which names exist is read from the folder itself (scripts/make_bundled_models.sh writes
them), so a build without them lists none rather than failing."""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent
MODELS_DIR = BUNDLED_DIR / "models"
DATA_DIR = BUNDLED_DIR / "data"


def bundled_names() -> list[str]:
    """The bundled model names, sorted; only those whose card is present count."""
    return sorted(p.name[: -len(".onnx")] for p in MODELS_DIR.glob("*.onnx")
                  if p.with_name(p.name + ".json").is_file())


def bundled_path(name: str) -> Path | None:
    """`<name>.onnx` of a bundled model, or None when no such model is bundled."""
    return MODELS_DIR / f"{name}.onnx" if name in bundled_names() else None
