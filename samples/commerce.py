"""What the sample show sells: a small product list per language and what the host says about each.

A pitch (a product segment, 看点) is built from an item's lines: an intro naming the product, a few
descriptions (some use an alias, some name nothing), the price said aloud, a link call and maybe a
closing line. Lines with an ad-wording phrase (:data:`AD_WORDS`) are separate, so the show decides
how many it plants. No line here contains a speech keyword ("link is up", "上链接", ...): a pitch
whose link call should be a highlight borrows the sale highlight's own words.

Numbers are written as the voices read them (English in words; Chinese in characters), so the
price the host says is the price in the list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The ad-wording phrases the show plants (a subset of what the detector flags by default).
AD_WORDS: dict[str, tuple[str, ...]] = {
    "zh": ("最好", "第一", "国家级", "顶级", "100%有效", "全网最低", "绝对"),
    "en": ("best ever", "guaranteed cure", "number one", "100% effective", "lowest price ever"),
}
#: Words that contain a listed phrase but are harmless (the detector lists the same exceptions).
_AD_EXCEPTIONS: dict[str, tuple[str, ...]] = {"第一": ("第一次", "第一个", "第一步", "第一天", "第一件", "第一眼")}
_CJK = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True)
class Item:
    """One product and its pitch lines."""

    id: str
    name: str
    aliases: tuple[str, ...]
    price: float  #: today's price, said aloud
    label: str  #: what the product card in the picture reads (ASCII: the picture's font has no CJK)
    colour: str  #: the product's colour in the picture
    intros: tuple[str, ...]
    descriptions: tuple[str, ...]
    ad_lines: tuple[str, ...]  #: descriptions with an ad-wording phrase
    price_line: str
    price_ad_line: str  #: the price line with an ad-wording phrase ("" when none)
    link_line: str  #: a link call without any speech keyword
    closings: tuple[str, ...] = ()

    def as_json(self) -> dict:
        """The product as the show's product list has it (what ``ace process --products`` reads)."""
        return {"id": self.id, "name": self.name, "aliases": list(self.aliases), "price": self.price}

    def lines(self) -> list[str]:
        """Every line this item may say."""
        out = [*self.intros, *self.descriptions, *self.ad_lines, self.price_line, self.link_line, *self.closings]
        return out + ([self.price_ad_line] if self.price_ad_line else [])

    @property
    def price_text(self) -> str:
        p = f"{self.price:g}"
        return f"¥{p}" if _CJK.search(self.name) else f"${p}"


CATALOG: dict[str, tuple[Item, ...]] = {
    "en": (
        Item(
            "summit-mug", "Summit travel mug", ("travel mug", "Summit mug"), 29.0, "SUMMIT TRAVEL MUG", "0x1e6fd9",
            intros=("Next up is the Summit travel mug.", "Let me show you the Summit travel mug."),
            descriptions=(
                "The Summit mug keeps your coffee hot for about six hours.",
                "The lid clicks shut, so nothing leaks in your bag.",
                "The travel mug fits in most car cup holders.",
                "The steel inside does not keep the taste of yesterday's tea.",
                "It comes in white, sand and a deep blue.",
                "The handle folds away when you do not need it.",
                "It is easy to clean, the lid comes apart in two pieces.",
            ),
            # lines the English recogniser hears as said: espeak's "best ever" comes out as "best time" or "mass tanver"
            ad_lines=("This is the lowest price ever for a mug like this.",
                      "People call it the number one mug for long trips."),
            price_line="It is usually forty nine dollars, today only twenty nine.",
            price_ad_line="",
            link_line="The link for it is in the shop below.",
            closings=("That is the Summit travel mug, have a look at the photos in the shop.",),
        ),
        Item(
            "storm-jacket", "Storm rain jacket", ("rain jacket", "Storm jacket"), 59.0, "STORM RAIN JACKET", "0x27ae60",
            intros=("Now let me show you the Storm rain jacket.", "Next up is the Storm rain jacket."),
            descriptions=(
                "The rain jacket is light enough to carry in a small bag.",
                "It comes in three colours: navy, olive and a light grey.",
                "The sizes run a little large, so you may want to pick one size down.",
                "Let me turn it around so you can see the stitching on the back.",
                "The zipper is metal, and the pockets are deep enough for a phone.",
                "The hood rolls into the collar when you do not need it.",
                "The cuffs close with a soft strap, so the rain stays out.",
            ),
            ad_lines=("This is the number one jacket for a rainy walk.",),
            price_line="It is usually eighty nine dollars, today only fifty nine.",
            price_ad_line="It is usually eighty nine dollars, today only fifty nine, the lowest price ever.",
            link_line="The link for it is in the shop below.",
            closings=("So that is the Storm rain jacket, in navy, olive and grey.",),
        ),
        Item(
            "cozy-blanket", "Cozy blanket", ("blanket", "Cozy throw"), 39.0, "COZY BLANKET", "0xc0392b",
            intros=("Next up is the Cozy blanket.", "Here is the Cozy blanket I promised to show you."),
            descriptions=(
                "The blanket is made from soft fleece and keeps you warm on the sofa.",
                "It is big enough for two people to share.",
                "It washes well and does not lose its shape.",
                "It comes in cream, grey and a deep green.",
                "You can fold it into its own pocket for a trip.",
                "The edges are stitched twice, so they stay neat.",
            ),
            ad_lines=("The maker calls it a guaranteed cure for cold evenings.",),
            price_line="It is usually sixty nine dollars, today only thirty nine.",
            price_ad_line="It is usually sixty nine dollars, today only thirty nine, the lowest price ever.",
            link_line="The link for it is in the shop below.",
            closings=("That was the Cozy blanket, it makes a lovely gift too.",),
        ),
        Item(
            "moon-lamp", "Moon reading lamp", ("reading lamp", "Moon lamp"), 24.0, "MOON READING LAMP", "0xffd400",
            intros=("Next up is the Moon reading lamp.", "Let me switch on the Moon reading lamp for you."),
            descriptions=(
                "This lamp has three brightness levels and a warm colour setting.",
                "It charges over USB and lasts about a week on one charge.",
                "The arm bends, so you can point the light where you need it.",
                "The reading lamp folds flat and fits in a drawer.",
                "The light does not flicker, so it is easy on the eyes.",
                "There is a small clip on the base for your phone cable.",
            ),
            ad_lines=("Honestly, it is the number one light for your bedside table.",),
            price_line="It is usually thirty five dollars, today only twenty four.",
            price_ad_line="It is usually thirty five dollars, today only twenty four, the lowest price ever.",
            link_line="The link for it is in the shop below.",
            closings=("That is the Moon reading lamp, small but very handy.",),
        ),
    ),
    "zh": (
        Item(
            "bear-cup", "小熊保温杯", ("保温杯", "这个杯子"), 69.0, "XIAOXIONG CUP", "0x1e6fd9",
            intros=("接下来给大家介绍这款小熊保温杯。", "我们来看看这款小熊保温杯。"),
            descriptions=(
                "这个杯子是不锈钢内胆，热水放六个小时还是烫的。",
                "杯盖拧紧以后，放在包里也不会漏水。",
                "容量是五百毫升，上班带着刚刚好。",
                "颜色有白色、粉色和浅蓝色。",
                "保温杯的杯身很轻，小朋友也拿得动。",
                "杯口做得比较宽，放冰块也方便。",
            ),
            ad_lines=("这是全网最好的保温杯。", "这个杯子的保温效果绝对没话说。"),
            price_line="原价一百九十九元，今天只要六十九元。",
            price_ad_line="原价一百九十九元，今天只要六十九元，绝对划算。",
            link_line="链接挂在下面了，喜欢的可以去看看。",
            closings=("小熊保温杯就介绍到这里。",),
        ),
        Item(
            "cloud-down-jacket", "云朵羽绒服", ("羽绒服", "这件外套"), 299.0, "YUNDUO DOWN JACKET", "0xf5f0e1",
            intros=("接下来给大家看看这件云朵羽绒服。", "下面这款是云朵羽绒服。"),
            descriptions=(
                "这件外套特别轻，叠起来可以放进背包。",
                "面料防风防水，下小雨也不怕。",
                "尺码偏大，建议大家选小一号。",
                "有黑色、米色和深绿色三种颜色。",
                "羽绒服的帽子可以拆下来。",
                "袖口有防风的设计，冬天骑车也不冷。",
            ),
            ad_lines=("里面是顶级的白鸭绒，穿上特别暖和。",),
            price_line="原价五百九十九元，今天只要二百九十九元。",
            price_ad_line="原价五百九十九元，今天只要二百九十九元，绝对划算。",
            link_line="链接挂在下面了，喜欢的可以去看看。",
            closings=("云朵羽绒服就先说到这里。",),
        ),
        Item(
            "star-lamp", "星光护眼台灯", ("护眼台灯", "台灯"), 89.0, "XINGGUANG DESK LAMP", "0xffd400",
            intros=("接下来给大家介绍这款星光护眼台灯。", "我们来看看星光护眼台灯。"),
            descriptions=(
                "台灯有三档亮度，晚上看书很舒服。",
                "充满电可以用一个星期。",
                "灯臂可以随意弯折，照哪里都方便。",
                "光线很柔和，不会晃眼睛。",
                "底座很稳，不容易碰倒。",
            ),
            ad_lines=("这款灯通过了国家级的检测。",),
            price_line="原价一百五十九元，今天只要八十九元。",
            price_ad_line="原价一百五十九元，今天只要八十九元，绝对划算。",
            link_line="链接挂在下面了，喜欢的可以去看看。",
            closings=("星光护眼台灯就介绍到这里。",),
        ),
        Item(
            "bamboo-towel", "竹纤维毛巾", ("毛巾",), 39.0, "ZHUXIANWEI TOWEL", "0xc0392b",
            intros=("接下来给大家介绍这款竹纤维毛巾。", "下面给大家看看竹纤维毛巾。"),
            descriptions=(
                "毛巾很柔软，吸水也特别快。",
                "一套有四条，每条颜色都不一样。",
                "洗了很多次也不会掉毛。",
                "颜色不会褪，用很久还是新的一样。",
                "放在浴室里干得也快。",
            ),
            ad_lines=("用起来绝对舒服。",),
            price_line="原价七十九元，今天只要三十九元。",
            price_ad_line="原价七十九元，今天只要三十九元，绝对划算。",
            link_line="链接挂在下面了，喜欢的可以去看看。",
            closings=("竹纤维毛巾就介绍到这里。",),
        ),
    ),
}


def ad_phrases(text: str) -> list[str]:
    """The :data:`AD_WORDS` phrases ``text`` contains (Latin on word boundaries, case-insensitive;
    Chinese as substrings, less the harmless words that contain them)."""
    found: list[str] = []
    low = text.lower()
    for phrases in AD_WORDS.values():
        for p in phrases:
            if _CJK.search(p):
                hits = [m.start() for m in re.finditer(re.escape(p), low)]
                ok = [i for i in hits if not any(low.startswith(x, i) for x in _AD_EXCEPTIONS.get(p, ()))]
                if ok:
                    found.append(p)
            elif re.search(r"(?<![\w])" + re.escape(p).replace(r"\ ", r"\s+") + r"(?![\w])", low):
                found.append(p)
    return found


def names_product(text: str, items: tuple[Item, ...]) -> list[str]:
    """Ids of the items whose name or an alias appears in ``text`` (exactly, case-insensitive)."""
    low = text.lower()
    return [it.id for it in items if any(n.lower() in low for n in (it.name, *it.aliases))]
