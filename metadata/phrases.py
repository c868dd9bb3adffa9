"""The words and phrases that make metadata worse, per language: "image of" openers,
refusals, meta text, placeholders, promotion, credit lines, injected instructions, stop
words and file-name noise.

Supported for openers, refusals and stop words: en, de, fr, es, it, pt, nl (stop words
also ru, el, ar, hi, pl, sv). Patterns are matched case-insensitively on NFC text.
"""

from __future__ import annotations

import regex

_F = regex.IGNORECASE | regex.VERBOSE | regex.UNICODE

_IMG_EN = r"(?:image|picture|photo(?:graph)?|graphic|illustration|snapshot|screenshot|shot)"
_IMG_DE = r"(?:bild|foto|photo|fotografie|abbildung|grafik|aufnahme|illustration)"
_IMG_FR = r"(?:image|photo(?:graphie)?|illustration)"
_IMG_ES = r"(?:imagen|foto(?:grafía)?|ilustración)"
_IMG_IT = r"(?:immagine|foto(?:grafia)?|illustrazione)"
_IMG_PT = r"(?:imagem|foto(?:grafia)?|ilustração)"
_IMG_NL = r"(?:afbeelding|foto|illustratie|plaatje)"
_LABELS = (
    r"(?:image|picture|photo|graphic|alt(?:ernative)?[\s-]?text|alt|description|caption|"
    r"bild|foto|bildbeschreibung|beschreibung|texte\s+alternatif|imagen|texto\s+alternativo|"
    r"descripción|immagine|testo\s+alternativo|descrizione|imagem|descrição|afbeelding|"
    r"alt-?tekst|beschrijving|画像|图片|图像|代替テキスト)"
)

# Each opener is removed and the sentence recapitalised; a replacement keeps meaning that
# the opener carried ("Close-up photo of a bee" -> "Close-up of a bee").
OPENERS: tuple[tuple[regex.Pattern[str], str], ...] = tuple(
    (regex.compile(pattern, _F), replacement)
    for pattern, replacement in (
        (rf"^(?:an?\s+|the\s+)?close[\s-]?up\s+{_IMG_EN}\s+of\s+", "Close-up of "),
        (rf"^{_LABELS}\s*[:：]\s*", ""),
        (rf"^(?:here\s+is|here['’]s|this\s+is)\s+(?:an?|the)\s+{_IMG_EN}\s+(?:of|showing)\s+", ""),
        (
            rf"^(?:this|the)\s+{_IMG_EN}\s+(?:shows|depicts|features|contains|displays|"
            r"captures|presents|illustrates|is\s+of)\s+",
            "",
        ),
        (rf"^in\s+this\s+{_IMG_EN}\s*,?\s+(?:we\s+(?:can\s+)?see\s+|there\s+(?:is|are)\s+)?", ""),
        (rf"^(?:an?\s+|the\s+)?{_IMG_EN}\s+(?:of|showing|depicting|that\s+shows|featuring)\s+", ""),
        # de
        (rf"^(?:dieses|das)\s+{_IMG_DE}\s+zeigt\s+", ""),
        (rf"^auf\s+(?:diesem|dem)\s+{_IMG_DE}\s+(?:sieht\s+man|erkennt\s+man)\s+", ""),
        (rf"^hier\s+(?:ist|sieht\s+man)\s+(?:ein|eine|einen)\s+{_IMG_DE}\s+von\s+", ""),
        (rf"^(?:ein\s+|eine\s+|das\s+)?{_IMG_DE}\s+(?:von|zeigt)\s+", ""),
        # fr
        (rf"^(?:cette|l['’])\s*{_IMG_FR}\s+(?:montre|représente|présente|illustre)\s+", ""),
        (rf"^sur\s+cette\s+{_IMG_FR}\s*,?\s+(?:on\s+(?:voit|peut\s+voir)\s+)?", ""),
        (rf"^(?:une\s+)?{_IMG_FR}\s+(?:de\s+|d['’]|montrant\s+|représentant\s+)", ""),
        # es
        (rf"^(?:esta|la)\s+{_IMG_ES}\s+(?:muestra|representa|presenta)\s+", ""),
        (
            rf"^en\s+(?:esta|la)\s+{_IMG_ES}\s*,?\s+"
            r"(?:se\s+(?:ve|ven|muestra|muestran|observa|observan)\s+)?",
            "",
        ),
        (rf"^(?:una\s+)?{_IMG_ES}\s+(?:de|que\s+muestra)\s+", ""),
        # it
        (rf"^(?:questa|l['’])\s*{_IMG_IT}\s+(?:mostra|raffigura|rappresenta|ritrae)\s+", ""),
        (rf"^in\s+questa\s+{_IMG_IT}\s*,?\s+(?:si\s+vede\s+|si\s+vedono\s+)?", ""),
        (rf"^(?:un['’]\s*|una\s+)?{_IMG_IT}\s+(?:di|che\s+mostra|raffigurante)\s+", ""),
        # pt
        (rf"^(?:esta|a)\s+{_IMG_PT}\s+(?:mostra|retrata|apresenta|representa)\s+", ""),
        (rf"^nesta\s+{_IMG_PT}\s*,?\s+(?:vê-se\s+|podemos\s+ver\s+)?", ""),
        (rf"^(?:uma\s+)?{_IMG_PT}\s+(?:de|que\s+mostra)\s+", ""),
        # nl
        (rf"^(?:deze|de)\s+{_IMG_NL}\s+(?:toont|laat\s+zien|geeft\s+weer)\s+", ""),
        (rf"^op\s+(?:deze|de)\s+{_IMG_NL}\s+(?:zie\s+je|zien\s+we|is|staat|staan)\s+", ""),
        (rf"^(?:een\s+)?{_IMG_NL}\s+van\s+", ""),
        # ja, zh
        (r"^(?:この|これは)(?:画像|写真)(?:は|には)[、,]?\s*", ""),
        (r"^(?:这张|这幅|该)(?:图片|照片|图像)(?:显示|展示|描绘)了?[，,]?\s*", ""),
    )
)

REFUSALS: tuple[regex.Pattern[str], ...] = tuple(
    regex.compile(p, _F)
    for p in (
        r"\bas\s+an\s+ai\b",
        r"\bai\s+language\s+model\b",
        r"^(?:i['’]m|i\s+am)\s+(?:sorry|afraid|unable|not\s+able)\b",
        r"^sorry,?\s+(?:i|but)\b",
        r"^i\s+(?:can(?:no|['’])t|cannot|apologi[sz]e|won['’]t\s+be\s+able)\b",
        r"\bi\s+(?:can(?:no|['’])t|cannot|am\s+unable\s+to)\s+"
        r"(?:help|assist|describe|identify|provide|see|view|process)\b",
        r"^es\s+tut\s+mir\s+leid\b",
        r"^(?:leider\s+)?(?:kann|darf)\s+ich\s+(?:nicht|kein|keine|dieses|das)\b",
        r"^ich\s+kann\s+(?:nicht|kein|keine|dieses|das|leider)\b",
        r"\bals\s+(?:ki|ki-sprachmodell|sprachmodell)\b",
        r"^(?:je\s+suis\s+)?désolée?\b",
        r"^je\s+ne\s+(?:peux|suis\s+pas\s+en\s+mesure)\b",
        r"\ben\s+tant\s+qu['’](?:ia|intelligence\s+artificielle|modèle\s+de\s+langage)\b",
        r"^lo\s+siento\b",
        r"^(?:lamentablemente,?\s+)?no\s+puedo\b",
        r"\bcomo\s+(?:una\s+)?(?:ia|modelo\s+de\s+lenguaje)\b",
        r"^mi\s+dispiace\b",
        r"^non\s+posso\b",
        r"\bcome\s+(?:un['’]\s*)?(?:ia|intelligenza\s+artificiale|modello\s+linguistico)\b",
        r"^(?:desculpe|sinto\s+muito|lamento)\b",
        r"^não\s+(?:posso|consigo)\b",
        r"\bcomo\s+(?:uma\s+)?(?:ia|modelo\s+de\s+linguagem)\b",
        r"^het\s+spijt\s+me\b",
        r"^(?:sorry,?\s+)?ik\s+kan\s+(?:geen|niet|deze|dit)\b",
        r"\bals\s+(?:ai|taalmodel)\b",
        r"申し訳|できません",
        r"抱歉|无法(?:识别|描述|提供)",
    )
)

META: tuple[regex.Pattern[str], ...] = tuple(
    regex.compile(p, _F)
    for p in (
        r"^(?:sure|certainly|of\s+course|okay|ok|absolutely)\b\s*[!,.:]",
        r"^here(?:['’]s|\s+is|\s+are)\b",
        r"\balt(?:ernative)?[\s-]?text\b",
        r"\b(?:this|the)\s+(?:description|caption|title)\s+(?:is|describes)\b",
        r"\(\s*\d+\s+(?:characters?|chars|zeichen|caractères|caracteres)\s*\)",
        r"\bcharacters?\s+long\b",
        r"^(?:note|hinweis|remarque|nota)\s*:",
        r"\bjson\b",
    )
)

INSTRUCTIONS: tuple[regex.Pattern[str], ...] = tuple(
    regex.compile(p, _F)
    for p in (
        r"\bignore\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above|earlier)\s+"
        r"(?:instructions|prompts?|rules)\b",
        r"\bdisregard\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above|your)\b",
        r"\b(?:system|developer)\s+prompt\b",
        r"\byou\s+are\s+now\b",
        r"\b(?:new|updated)\s+instructions\s*:",
        r"\bignoriere\s+(?:alle\s+)?(?:vorherigen|bisherigen|obigen)\s+anweisungen\b",
        r"\bignore[zr]?\s+(?:les|toutes\s+les)\s+instructions\b",
        r"\bignora\s+(?:las|todas\s+las|le|tutte\s+le)\s+(?:instrucciones|istruzioni)\b",
    )
)

# Whole values that say nothing (compared casefolded, without end punctuation).
PLACEHOLDERS: frozenset[str] = frozenset(
    """
    image|picture|photo|photograph|graphic|icon|logo|banner|illustration|screenshot|
    an image|a picture|a photo|an illustration|the image|image of|photo of|picture of|
    untitled|untitled image|unbenannt|sans titre|sin título|senza titolo|sem título|naamloos|
    default|placeholder|platzhalter|test|test image|dummy|sample|sample image|example|
    alt text|alt text here|alt-text|insert alt text|enter alt text|add alt text|
    your alt text here|alt text goes here|image description|description|no description|
    no description available|caption|title|keywords|decorative image|decorative|
    decorative graphic|dekoratives bild|dekorativ|image décorative|imagen decorativa|
    immagine decorativa|imagem decorativa|decoratieve afbeelding|spacer|
    bild|foto|imagen|immagine|imagem|afbeelding|grafik|beschreibung|descripción|
    n/a|na|none|null|undefined|tbd|todo|xxx|stock photo|stock image|beautiful image|
    nice picture|nice photo|great photo|an image of something|something
    """.replace("\n", "")
    .replace("    ", "")
    .split("|")
)
LOREM = regex.compile(r"^\s*lorem\s+ipsum\b", _F)

PROMOTION: tuple[regex.Pattern[str], ...] = tuple(
    regex.compile(p, _F)
    for p in (
        r"\bbuy\s+(?:now|online|today|here|cheap|\d)",
        r"\bcheap(?:est)?\s+(?:\w+\s+)?(?:at|from|online|here|now|prices?|deals?)\b",
        r"\bdiscounts?\b",
        r"\bclick\s+here\b",
        r"\b(?:shop|order|call|book|subscribe)\s+now\b",
        r"\bfree\s+(?:shipping|delivery|trial)\b",
        r"\blimited[\s-]+(?:time\s+)?offer\b",
        r"\b\d{1,2}\s?%\s+off\b",
        r"\bbest\s+prices?\b",
        r"\bpromo\s+code\b",
        r"\bjetzt\s+(?:kaufen|bestellen)\b",
        r"\bgünstig\s+kaufen\b",
        r"\brabatt\b",
        r"\bpas\s+cher\b",
        r"\bacheter\s+maintenant\b",
        r"\bcompra(?:r)?\s+ahora\b",
        r"\bbarat[oa]s?\b",
        r"\bcompra\s+ora\b",
        r"\bsconto\b",
        r"\bcompre\s+já\b",
        r"\bnu\s+kopen\b",
        r"\bgoedkoop\b",
        r"\bkorting\b",
    )
)

STOCK_SITES = (
    r"shutterstock|getty\s?images|istock(?:photo)?|adobe\s?stock|alamy|pexels|unsplash|"
    r"pixabay|depositphotos|dreamstime|123rf|freepik|canva|envato|stocksy|bigstock"
)
CREDITS: tuple[regex.Pattern[str], ...] = tuple(
    regex.compile(p, _F)
    for p in (
        r"©|\(c\)\s*\d{4}|\bcopyright\b|\ball\s+rights\s+reserved\b",
        r"\balle\s+rechte\s+vorbehalten\b|\btous\s+droits\s+réservés\b",
        r"\btodos\s+los\s+derechos\s+reservados\b|\btutti\s+i\s+diritti\s+riservati\b",
        r"\btodos\s+os\s+direitos\s+reservados\b|\balle\s+rechten\s+voorbehouden\b",
        # "Photo by Jane Doe", "Foto von Max Muster", but not "Foto von einer Katze".
        r"\b(?:photo|image|picture|foto|bild)\s*(?:credit|by|von|de|di|door)\s*:?\s+(?-i:\p{Lu})",
        r"\b(?:credits?|bildnachweis|crédit|crédito|credito|fotograf|photographer)\s*:",
        r"\bcourtesy\s+of\b",
        rf"\b(?:{STOCK_SITES})\b",
    )
)
MADE_WITH = regex.compile(
    r"\b(?:made|created|edited|processed|generated|designed|shot|taken|captured)\s+"
    r"(?:with|by|on|using|in)\s+\S",
    _F,
)

# The last word of text that was cut: "A dog running on the".
DANGLING_WORDS: frozenset[str] = frozenset(
    str.split(
        """
    and or the an of with to for from by but
    und oder der die das ein eine mit von zu für
    et ou le la les un une de des du avec pour au
    el los las una del con para
    il lo gli di per
    os um uma com
    het een van met voor
    """
    )
)

STOP_WORDS: dict[str, frozenset[str]] = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": "a an the and or of on in at to for from by with without over under near into "
        "onto is are was were be this that these those my our your his her its their it as up",
        "de": "der die das den dem des ein eine einen einem einer eines und oder auf im in am an "
        "zu zum zur mit von vom für bei aus über unter vor nach ist sind mein dein sein ihr",
        "fr": "le la les l un une des de du d et ou au aux à en dans sur sous avec pour par "
        "est sont ce cette ces mon ma mes son sa ses",
        "es": "el la los las un una unos unas de del y o en a al con por para sobre bajo es "
        "son este esta estos estas mi su sus",
        "it": "il lo la i gli le un uno una di del della dei delle e o in a al alla con per su "
        "sul sulla è sono questo questa mio suo",
        "pt": "o a os as um uma de do da dos das e ou em no na nos nas com por para sobre é "
        "este esta meu seu sua",
        "nl": "de het een en of van in op aan met voor bij uit over onder is zijn dit dat deze "
        "mijn zijn haar",
        "ru": "и в во на с со по из у к о об от до для за под над при это как а но",
        "el": "και ο η το οι τα του της των τον την στο στον στην στα με σε από για",
        "ar": "في على من إلى عن مع و أو ال هذا هذه",
        "hi": "और का की के में पर से है हैं को एक",
        "pl": "i w we na z ze do od o u dla po pod nad przy jest są",
        "sv": "och i på en ett av med till för från är om vid under över",
    }.items()
}
ALL_STOP_WORDS: frozenset[str] = frozenset().union(*STOP_WORDS.values())
