"""Chinese personal names: surname splitting and pinyin keys for matching."""

from __future__ import annotations

import functools
import re
import unicodedata

# Two-character surnames (复姓) that must not be split after the first character.
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 令狐 宇文 夏侯 轩辕 端木 司徒 "
    "申屠 澹台 万俟 闻人 西门 南宫 呼延 独孤 百里 东郭 钟离 太史 公羊 赫连 濮阳".split()
)

_HAN = re.compile(r"[\u3400-\u9fff\U00020000-\U0002ffff]")
_MIDDLE_DOT = re.compile(r"[·•・.]")


def is_chinese(text: str) -> bool:
    return bool(text) and bool(_HAN.search(text))


def split_chinese_name(text: str) -> tuple[str | None, str | None]:
    """``("张", "伟")`` for 张伟, ``("欧阳", "修")`` for 欧阳修; ``(None, None)`` when unsure.

    Names with a middle dot (minority names such as 阿依古丽·买买提) and
    non-Chinese names are not split: their text is the whole name.
    """
    text = (text or "").strip()
    if not is_chinese(text) or _MIDDLE_DOT.search(text) or len(text) < 2 or " " in text:
        return None, None
    if len(text) >= 3 and text[:2] in COMPOUND_SURNAMES:
        return text[:2], text[2:]
    return text[:1], text[1:]


@functools.lru_cache(maxsize=65536)
def pinyin_syllables(text: str) -> tuple[str, ...]:
    """Toneless pinyin syllables of a Chinese name (``张伟`` -> ``("zhang", "wei")``).

    Surname readings (曾 zeng, 单 shan...) follow pypinyin's surname mode when
    the name is Chinese. Romanised input is split on spaces and hyphens.
    """
    text = unicodedata.normalize("NFKC", text or "").strip()
    if is_chinese(text):
        from pypinyin import Style
        from pypinyin import lazy_pinyin

        family, given = split_chinese_name(text)
        if family:
            surname = _SURNAME_READINGS.get(family) or lazy_pinyin(family, style=Style.NORMAL)
            syllables = list(surname) + lazy_pinyin(given, style=Style.NORMAL)
        else:
            syllables = lazy_pinyin(_MIDDLE_DOT.sub("", text), style=Style.NORMAL)
        return tuple(c for c in (_clean(s) for s in syllables) if c)
    return tuple(c for c in (_clean(p) for p in re.split(r"[\s\-_,.·]+", text)) if c)


# Characters read differently as surnames than pypinyin's default reading.
_SURNAME_READINGS = {
    "曾": ["zeng"],
    "单": ["shan"],
    "解": ["xie"],
    "仇": ["qiu"],
    "朴": ["piao"],
    "区": ["ou"],
    "查": ["zha"],
    "盖": ["ge"],
    "乐": ["yue"],
    "缪": ["miao"],
    "翟": ["zhai"],
    "秘": ["bi"],
    "召": ["shao"],
    "覃": ["qin"],
    "种": ["chong"],
    "员": ["yun"],
    "尉迟": ["yu", "chi"],
    "万俟": ["mo", "qi"],
    "长孙": ["zhang", "sun"],
    "澹台": ["tan", "tai"],
    "黑": ["he"],
    "繁": ["po"],
    "折": ["she"],
}


def _clean(syllable: str) -> str:
    # ü is written v (pypinyin), u: or yu in passports (Lyu): one spelling for all.
    text = syllable.lower().replace("ü", "v").replace("u:", "v").strip()
    return {"lyu": "lv", "nyu": "nv"}.get(text, text)


def pinyin_keys(text: str) -> frozenset[str]:
    """Keys under which two spellings of one name compare equal.

    ``张伟``, ``Zhang Wei``, ``ZHANG WEI``, ``ZhangWei`` and ``Wei Zhang``
    (given name first, as in passports read the Western way) share a key.
    """
    syllables = pinyin_syllables(text)
    if not syllables:
        return frozenset()
    joined = "".join(syllables)
    keys = {joined}
    if not is_chinese(text) and len(syllables) >= 2:
        keys.add("".join(syllables[1:]) + syllables[0])  # "Wei Zhang"
        keys.add(syllables[-1] + "".join(syllables[:-1]))
    return frozenset(keys)
