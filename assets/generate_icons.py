#!/usr/bin/env python3
"""Draw the tray icons into this folder as 44x44 PNG files.

Each state has a colour icon for Linux panels and a black-and-alpha
template icon for the macOS menu bar, which tints templates to match light
and dark bars. The shapes alone tell the states apart, so the template
icons need no colour:

- valid: a closed padlock;
- expiring: a closed padlock with a hollow body and an exclamation mark;
- none: an open padlock;
- waiting: an open padlock with three dots (a code is being waited for).

Uses only the standard library. Run it again after changing a shape.
"""

import math
import struct
import zlib
from pathlib import Path

SIZE = 44
SUPERSAMPLE = 4

COLOURS = {
    "valid": (46, 160, 67),
    "expiring": (230, 140, 20),
    "none": (128, 128, 128),
    "waiting": (40, 110, 220),
}


def rounded_rect(x, y, left, top, right, bottom, radius):
    cx = min(max(x, left + radius), right - radius)
    cy = min(max(y, top + radius), bottom - radius)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2


def shackle(x, y, open_lock):
    # A U-shaped bar above the body: an arc on top and two legs.
    centre_x = 22 + (7 if open_lock else 0)
    centre_y = 16 - (4 if open_lock else 0)
    outer, inner = 9.5, 5.5
    distance = math.hypot(x - centre_x, y - centre_y)
    if y <= centre_y:
        return inner <= distance <= outer
    legs_bottom = 22
    on_left_leg = centre_x - outer <= x <= centre_x - inner
    on_right_leg = centre_x + inner <= x <= centre_x + outer
    if open_lock:
        return on_right_leg and y <= legs_bottom
    return (on_left_leg or on_right_leg) and y <= legs_bottom


def body(x, y):
    return rounded_rect(x, y, 9, 20, 35, 40, 3.5)


def body_hole(x, y):
    return rounded_rect(x, y, 13, 24, 31, 36, 1.5)


def keyhole(x, y):
    return math.hypot(x - 22, y - 28) <= 2.6 or (20.8 <= x <= 23.2 and 28 <= y <= 33.5)


def exclamation(x, y):
    return (20.6 <= x <= 23.4 and 25 <= y <= 31) or math.hypot(x - 22, y - 34) <= 1.5


def dots(x, y):
    return any(math.hypot(x - cx, y - 30) <= 2.2 for cx in (15.5, 22, 28.5))


def covered(state, x, y):
    """Return (ink, cut): whether (x, y) is drawn, and whether it is a cut-out."""
    open_lock = state in ("none", "waiting")
    if shackle(x, y, open_lock):
        return True
    if not body(x, y):
        return False
    if state == "expiring":
        return not body_hole(x, y) or exclamation(x, y)
    if state == "waiting":
        return not dots(x, y)
    return not keyhole(x, y)


def render(state, template):
    colour = (0, 0, 0) if template else COLOURS[state]
    rows = []
    step = 1 / SUPERSAMPLE
    for py in range(SIZE):
        row = bytearray([0])
        for px in range(SIZE):
            hits = 0
            for sy in range(SUPERSAMPLE):
                for sx in range(SUPERSAMPLE):
                    if covered(state, px + (sx + 0.5) * step, py + (sy + 0.5) * step):
                        hits += 1
            alpha = round(255 * hits / SUPERSAMPLE**2)
            row += bytes((*colour, alpha))
        rows.append(bytes(row))
    return b"".join(rows)


def write_png(path, pixels):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels, 9)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def main():
    folder = Path(__file__).resolve().parent
    for state in COLOURS:
        write_png(folder / f"tray-{state}.png", render(state, template=False))
        write_png(folder / f"tray-{state}-template.png", render(state, template=True))


if __name__ == "__main__":
    main()
