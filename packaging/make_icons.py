"""Draw Ember's icon (an ember: a glowing coal with a flame) and write it as PNG, ICO and ICNS.

    .venv/bin/python packaging/make_icons.py   # writes resources/icons/ember.{png,ico,icns}

Drawn here rather than taken from an icon set, so its licence is the repository's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"


def draw(size: int = 1024) -> Image.Image:
    scale = size / 1024
    picture = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    tile = ImageDraw.Draw(picture)
    tile.rounded_rectangle(
        [40 * scale, 40 * scale, 984 * scale, 984 * scale], radius=220 * scale, fill=(43, 38, 34, 255)
    )
    glow = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(glow).ellipse([262 * scale, 520 * scale, 762 * scale, 860 * scale], fill=(217, 98, 43, 200))
    picture.alpha_composite(glow.filter(ImageFilter.GaussianBlur(60 * scale)))
    # The flame: a teardrop from a circle and a point, outer orange, inner gold.
    for (cx, cy, r, tip), colour in (
        ((512, 640, 210, 170), (217, 98, 43, 255)),
        ((512, 690, 120, 380), (246, 185, 72, 255)),
    ):
        flame = Image.new("L", (size, size), 0)
        shape = ImageDraw.Draw(flame)
        shape.ellipse([(cx - r) * scale, (cy - r) * scale, (cx + r) * scale, (cy + r) * scale], fill=255)
        shape.polygon([((cx - r * 0.92) * scale, (cy - r * 0.38) * scale), (cx * scale, tip * scale),
                       ((cx + r * 0.92) * scale, (cy - r * 0.38) * scale)], fill=255)  # fmt: skip
        flame = flame.filter(ImageFilter.GaussianBlur(3 * scale))
        picture.paste(Image.new("RGBA", (size, size), colour), (0, 0), flame)
    return picture


def main() -> None:
    ICONS.mkdir(parents=True, exist_ok=True)
    big = draw()
    big.resize((256, 256), Image.Resampling.LANCZOS).save(ICONS / "ember.png")
    big.save(ICONS / "ember.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])
    big.save(ICONS / "ember.icns")
    assert np.asarray(big)[..., 3].max() == 255


if __name__ == "__main__":
    main()
