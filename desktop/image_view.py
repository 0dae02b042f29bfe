"""Showing images in the window: numpy pixels as QImages, and a view that scales them smoothly.

Diffusion previews and results are small next to the space they get (a 64x64 tiny-model
image, a 512x512 preview in a 900-pixel area), so they are scaled to fit with smooth
filtering, keeping the aspect ratio, on every paint rather than once: a resized window
never shows a blurry copy of a copy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QImageReader, QPainter, QPainterPath, QPaintEvent, QPen, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

# Formats a person can drop as an image-to-image input (what Pillow, behind the engine, reads too).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def qimage_from_array(pixels: np.ndarray) -> QImage:
    """Return an HxWx3 (or HxW, or HxWx4) uint8 array as a QImage that owns its memory.

    Raises ValueError for any other shape or type.
    """
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        raise ValueError(f"Expected uint8 pixels, got {array.dtype}.")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"Expected an HxWx3 image, got shape {array.shape}.")
    array = np.ascontiguousarray(array)
    height, width, channels = array.shape
    fmt = QImage.Format.Format_RGB888 if channels == 3 else QImage.Format.Format_RGBA8888
    # QImage only borrows the buffer; copy() makes it independent of the array's lifetime.
    return QImage(array.data, width, height, channels * width, fmt).copy()


def read_image(path: str | Path) -> tuple[QImage | None, str]:
    """Return (the image, "") for a readable image file, or (None, a sentence saying why not)."""
    path = Path(path)
    name = path.name or str(path)
    if not path.is_file():
        return None, f"Ember cannot find “{name}”. It may have been moved or deleted."
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    image = reader.read()
    if image.isNull():
        why = reader.errorString() or "unknown format"
        return None, (
            f"“{name}” is not an image Ember can read ({why.rstrip('.').lower()}). Use a PNG, JPEG, WebP or BMP file."
        )
    return image, ""


def thumbnail_icon(image: QImage, size: int) -> QIcon:
    """Return ``image`` scaled smoothly into a ``size``x``size`` square (centred, aspect kept) as an icon."""
    canvas = QPixmap(size, size)
    canvas.fill(Qt.GlobalColor.transparent)
    scaled = image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    painter = QPainter(canvas)
    painter.drawImage((size - scaled.width()) // 2, (size - scaled.height()) // 2, scaled)
    painter.end()
    return QIcon(canvas)


def dice_icon(size: int = 18, color: str = "#6d655e") -> QIcon:
    """Return a drawn die showing five (no emoji font is needed, so it looks the same everywhere)."""
    pixmap = QPixmap(size * 2, size * 2)  # drawn at 2x so it stays crisp on high-DPI screens
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    pen = QPen(QColor(color))
    pen.setWidthF(size * 0.14)
    painter.setPen(pen)
    side = size * 2
    inset = side * 0.1
    painter.drawRoundedRect(QRectF(inset, inset, side - 2 * inset, side - 2 * inset), side * 0.18, side * 0.18)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(color))
    radius = side * 0.075
    for fx, fy in ((0.32, 0.32), (0.68, 0.32), (0.5, 0.5), (0.32, 0.68), (0.68, 0.68)):
        painter.drawEllipse(QRectF(side * fx - radius, side * fy - radius, 2 * radius, 2 * radius))
    painter.end()
    pixmap.setDevicePixelRatio(2.0)
    return QIcon(pixmap)


class ImageView(QWidget):
    """One image, scaled smoothly to fit (aspect ratio kept), with a placeholder and a caption.

    ``set_image`` takes a QImage (or None to show the placeholder); ``set_caption`` shows
    a short line over the image's lower edge ("Loading the model…", "Preview, step 4").
    """

    def __init__(self, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._placeholder = placeholder
        self._caption = ""
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, False)

    def image(self) -> QImage | None:
        """The image shown, or None when the placeholder is."""
        return self._image

    def has_image(self) -> bool:
        """Whether an image is shown."""
        return self._image is not None and not self._image.isNull()

    def set_image(self, image: QImage | None) -> None:
        """Show ``image`` (None: the placeholder)."""
        self._image = image if image is not None and not image.isNull() else None
        self.update()

    def caption(self) -> str:
        """The caption shown over the image ("" when none)."""
        return self._caption

    def set_caption(self, text: str) -> None:
        """Show a short caption over the lower edge ("" hides it)."""
        self._caption = text
        self.update()

    def set_placeholder(self, text: str) -> None:
        """The text shown while there is no image."""
        self._placeholder = text
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(512, 512)

    def image_rect(self) -> QRect:
        """Where the image is drawn: scaled to fit, centred (an empty rect when there is none)."""
        if not self.has_image():
            return QRect()
        assert self._image is not None
        size = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        return QRect(
            (self.width() - size.width()) // 2, (self.height() - size.height()) // 2, size.width(), size.height()
        )

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        frame = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        clip = QPainterPath()
        clip.addRoundedRect(frame, 12, 12)
        painter.fillPath(clip, QColor("#f1ede7"))
        painter.setClipPath(clip)
        if self.has_image():
            assert self._image is not None
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(self.image_rect(), self._image)
        elif self._placeholder:
            painter.setPen(QColor("#8a7f75"))
            painter.drawText(
                self.rect().adjusted(24, 24, -24, -24),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self._placeholder,
            )
        if self._caption:
            metrics = painter.fontMetrics()
            width = metrics.horizontalAdvance(self._caption) + 24
            height = metrics.height() + 10
            pill = QRectF(12, self.height() - height - 12, min(width, self.width() - 24), height)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(43, 39, 36, 200))
            painter.drawRoundedRect(pill, height / 2, height / 2)
            painter.setPen(QColor("#ffffff"))
            painter.drawText(pill, Qt.AlignmentFlag.AlignCenter, self._caption)
        painter.end()
