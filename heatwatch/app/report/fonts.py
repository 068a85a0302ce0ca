"""Chinese text in plots: pick an installed CJK font for matplotlib, or say loudly that there is none.

matplotlib draws a missing glyph as an empty box ("tofu") and only warns; a report full of boxes
instead of community names is useless to dispatch, so the report records the problem on the page.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import matplotlib as mpl
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

log = logging.getLogger(__name__)

# preferred families, Simplified Chinese first (Debian: fonts-noto-cjk, fonts-wqy-zenhei, fonts-wqy-microhei)
CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Noto Serif CJK SC",
    "Droid Sans Fallback",
)
# files installed after matplotlib built its font cache are not in it; register them explicitly
CJK_FILES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
PROBE = "小区楼号供暖室温"
INSTALL_HINT = "install a CJK font (Debian: apt-get install fonts-noto-cjk) so Chinese names are drawn"


def has_glyphs(font_path: str | Path, text: str) -> bool:
    """True when the font file maps every non-space character of ``text`` to a glyph."""
    font = FT2Font(str(font_path))
    return all(font.get_char_index(ord(ch)) != 0 for ch in text if not ch.isspace())


def needs_cjk(text: str) -> bool:
    return any("\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\uff00" <= ch <= "\uffef" for ch in text)


@lru_cache(maxsize=1)
def cjk_font() -> tuple[str, str] | None:
    """(family, file) of an installed font that draws Chinese, or None."""
    fm = font_manager.fontManager
    known = {f.fname for f in fm.ttflist}
    for path in CJK_FILES:
        if Path(path).is_file() and path not in known:
            try:
                fm.addfont(path)
            except (OSError, RuntimeError) as exc:  # a broken font file must not stop the report
                log.warning("cannot load font %s: %s", path, exc)
    by_name: dict[str, list[str]] = {}
    for entry in fm.ttflist:
        by_name.setdefault(entry.name, []).append(entry.fname)
    candidates = [n for n in CJK_FAMILIES if n in by_name]
    candidates += sorted(n for n in by_name if n not in candidates and any(k in n for k in ("CJK", "Hei", "Song", "Kai", "Ming")))
    for name in candidates:
        for path in by_name[name]:
            try:
                if has_glyphs(path, PROBE):
                    return name, path
            except (OSError, RuntimeError):
                continue
    return None


def use_cjk_font() -> str | None:
    """Make matplotlib fall back to a CJK font for Chinese glyphs; the family name, or None with a warning."""
    found = cjk_font()
    if found is None:
        log.warning("no CJK font found: Chinese labels would be drawn as empty boxes; %s", INSTALL_HINT)
        return None
    family = found[0]
    # explicit families, not the "sans-serif" alias: matplotlib falls back glyph by glyph only along
    # the font.family list (the alias resolves to one font). DejaVu first for Latin/digits/°/−.
    mpl.rcParams["font.family"] = ["DejaVu Sans", family]
    mpl.rcParams["axes.unicode_minus"] = True
    return family
