#!/usr/bin/env python3
"""gen_tokenizer_goldens.py - writes tests/golden/tokenizer_ids.txt.

Reference: transformers' slow CLIPTokenizer (pinned transformers==4.46.3, the
`regex` package it pulls in, NO ftfy installed - the configuration a plain
`pip install diffusers transformers` gives), built from the same OpenAI
vocabulary the C tokenizer reads: vocab.json/merges.txt are constructed here
from bpe_simple_vocab_16e6.txt.gz exactly as sd-reference §1.1 describes, in a
temporary folder (the vocabulary itself is never committed).

Setup (once):
    python3 -m venv /work/venv-tok && /work/venv-tok/bin/pip install transformers==4.46.3
    make vocab
    /work/venv-tok/bin/python tests/reference/gen_tokenizer_goldens.py [GZ] [OUT]

Corpus: ~150 hand-written prompts (SD prompts, punctuation, numbers,
contractions, accents, NFD input, Greek/Cyrillic/CJK/Hangul/Arabic/Indic,
emoji and ZWJ sequences, full-width forms, HTML entities, A1111 syntax,
control characters, odd whitespace, special-token literals, invalid UTF-8,
long prompts) plus deterministic random prompts (fixed seed) mixing SD
vocabulary with Unicode from a pool of tricky characters.

Output format, one record per prompt (blank-line free, '#' comments):
    T <prompt>        the prompt's bytes, escaped (see esc())
    N <text>          the normalised text (BasicTokenizer path), escaped;
                      only for prompts without "<|" (no special literals)
    1 <ids>           SD1 input_ids: padding="max_length", max_length=77,
                      truncation=True, pad = <|endoftext|> (49407)
    2 <ids>           SD2 input_ids (pad_token "!" = 0, and "!" an added token
                      as in SD2's tokenizer_config), for every 5th prompt and
                      every prompt containing "!"
    R <ids>           all raw ids without specials or truncation, for
                      prompts longer than 75 tokens
Ids are space-separated; "v*k" stands for k copies of v (the padding run).
Escapes: "\\\\", and "\\xNN" for each byte of any code point that is not
printable (str.isprintable) or is a backslash, and for invalid UTF-8 bytes.
"""
import gzip
import json
import os
import random
import sys
import tempfile
import unicodedata

try:
    import ftfy  # noqa: F401

    sys.exit("ftfy is installed: the reference must be the no-ftfy path (pip uninstall ftfy)")
except ImportError:
    pass

import transformers
from transformers import CLIPTokenizer, logging as hf_logging
from transformers.models.clip.tokenization_clip import bytes_to_unicode

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GZ = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build/vocab/bpe_simple_vocab_16e6.txt.gz")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "tests/golden/tokenizer_ids.txt")


def build_files(folder, pad_token):
    """A diffusers tokenizer/ folder: vocab.json + merges.txt built from the
    OpenAI file (sd-reference §1.1), and the two config files as SD1.5
    (pad_token "<|endoftext|>") / SD2.x (pad_token "!") ship them."""
    os.makedirs(folder)
    lines = gzip.open(GZ).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    enc = dict(zip(vocab, range(len(vocab))))
    assert len(enc) == 49408
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(enc, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges))

    def added(content, typed):
        d = {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
        return dict({"__type": "AddedToken"}, **d) if typed else d

    config = {
        "add_prefix_space": False, "bos_token": added("<|startoftext|>", 1), "do_lower_case": True,
        "eos_token": added("<|endoftext|>", 1), "errors": "replace", "model_max_length": 77,
        "name_or_path": "openai/clip-vit-large-patch14", "pad_token": pad_token,
        "special_tokens_map_file": "./special_tokens_map.json", "tokenizer_class": "CLIPTokenizer",
        "unk_token": added("<|endoftext|>", 1),
    }
    specials = {"bos_token": added("<|startoftext|>", 0), "eos_token": added("<|endoftext|>", 0),
                "pad_token": pad_token, "unk_token": added("<|endoftext|>", 0)}
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump(specials, f, indent=2)


# ---- corpus ----------------------------------------------------------------

NFD = lambda s: unicodedata.normalize("NFD", s)  # noqa: E731

HAND = [
    # sd-reference §1.5 test vectors
    "a photo of a cat",
    "A photograph of an astronaut riding a horse",
    "hello, world! 123 don't",
    "(masterpiece:1.2), best quality",
    "",
    # typical SD prompts
    "a beautiful landscape painting of a mountain lake at sunset, highly detailed, trending on artstation",
    "portrait of a woman, by greg rutkowski and alphonse mucha, 8k, octane render, unreal engine 5",
    "cyberpunk city street at night, neon lights, rain, reflections, cinematic lighting, 35mm photograph",
    "a cute corgi wearing sunglasses, digital art, 4k uhd",
    "an oil painting of a bowl of fruit in the style of cezanne",
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality",
    "RAW photo, a close up portrait photo of 26 y.o woman in wastelander clothes, long haircut, pale skin, slim body",
    "Studio Ghibli style, a girl standing in a field of flowers, soft colors",
    "isometric 3d render of a tiny house, blender, low poly, pastel colors",
    "A1111-style: (((best quality))), ((ultra-detailed)), (illustration:1.1), [blurry], [[lowres]]",
    "(masterpiece:1.2), (best quality:1.3), 1girl, solo, looking at viewer, <lora:add_detail:0.5>",
    "[cat:dog:0.5] on a sofa, {red|blue|green} eyes, BREAK, background: forest",
    "<lora:x:0.5> <hypernet:foo:1> embedding:easynegative, (worst quality:1.4)",
    "photo of a cat AND a dog, wide angle, f/1.8, 1/200s, ISO 100",
    "a sign that says \"Hello World\", typography, bold font",
    "a sign that says 'OPEN 24/7'",
    # punctuation and symbols
    "!!!???...,,,;;;:::",
    "a,b.c;d:e!f?g",
    "email@example.com http://example.com/path?q=1&r=2#frag",
    "C++ and C# and F# -- 100% (really) [sic] {braces} <angle> |pipe| ~tilde~ `tick` ^caret^",
    "$100 + 50% = €150 £20 ¥300 ₿0.5",
    "___underscores___ ---dashes--- ***stars*** ###hash### ===eq===",
    "1+1=2, 3*4=12, 10/2=5, 2^10=1024, 7-3=4",
    "«quotes» „German“ ‚single‘ “curly” ‘curly’ 「Japanese」 『double』",
    "em—dash en–dash hyphen‐ minus− ellipsis… bullet• middle·dot",
    "\\backslash\\ and /slash/ and \\\\double",
    "a//b\\\\c",
    # numbers
    "1234567890",
    "3.14159 2.71828 1e10 -42 +7 0x1F 0b101",
    "year 2024, 4k, 8k, 16:9, 1920x1080, 24fps",
    "½ ¼ ¾ ² ³ ¹ ⁴ ₂ ③ ⑩ Ⅻ ⅻ",
    "١٢٣ ٤٥٦ ۷۸۹ १२३ ๑๒๓ 一二三",
    "𝟏𝟐𝟑 𝐀𝐁𝐂 𝒶𝒷𝒸 𝔸𝔹ℂ",
    # contractions
    "don't won't can't shouldn't it's he's she'd we'll they've I'm you're",
    "DON'T WON'T IT'S WE'LL THEY'VE I'M YOU'RE HE'D",
    "'s 't 're 've 'm 'll 'd",
    "''s '''t rock'n'roll o'clock y'all ma'am",
    "it's the cat's toy and the dogs' bowls",
    "it'S It'Ll WE'Re",
    "it’s don’t (curly apostrophes)",
    "l'amour d'été c'est la vie",
    "'quoted' \"double\" 'mixed\"",
    # accents, Latin
    "café naïve résumé façade coöperate",
    "Zürich München Köln Düsseldorf Österreich",
    "Ångström Æsir Øresund ÆØÅ æøå",
    "Straße STRASSE ß ẞ",
    "İstanbul ISTANBUL istanbul ı İ",
    "ǅungla ǈ ǋ Ǳ ǲ ǳ",
    "São Paulo, João, Conceição, ação",
    "español: ¿Dónde está la biblioteca? ¡Hola!",
    "français: l'été à Paris, où est la gare?",
    "Polish: Łódź, Gdańsk, źdźbło, żółć",
    "Czech: Příliš žluťoučký kůň úpěl ďábelské ódy",
    "Vietnamese: Tiếng Việt có dấu, phở bò, Hà Nội",
    "Turkish: ğüşıöç ĞÜŞİÖÇ",
    "ﬁ ﬂ ﬀ ﬃ ligatures: ﬁnance ﬂower",
    "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ ａｂｃ １２３ ！？",
    "ｆｕｌｌ ｗｉｄｔｈ ｃａｔ",
    "ﾊﾝｶｸ half-width katakana ｶﾀｶﾅ",
    # NFD input (must be composed by NFC)
    NFD("café naïve résumé"),
    NFD("Zürich Ångström"),
    NFD("Tiếng Việt"),
    NFD("안녕하세요 한국어"),
    NFD("ΆΈΉΊΌΎΏ ά έ ή"),
    "e\u0301 a\u0300 o\u0308 n\u0303 c\u0327",
    "a\u0323\u0302 a\u0302\u0323 (order of combining marks)",
    "q\u0307\u0323 x\u0301\u0301\u0301",
    "\u0301 leading combining mark",
    "\u0915\u094d\u0937 Devanagari conjunct, \u0928\u093c NUKTA",
    "\u1100\u1161\u11a8 \u1100\u1161 \u110b\u1173 Hangul jamo",
    "\u212b angstrom sign \u2126 ohm sign \u212a kelvin sign",
    "\uf900 \uf901 \ufa10 CJK compatibility ideographs",
    "\u0344 \u0f73 \u0958 excluded compositions",
    # Greek, Cyrillic
    "ΟΔΥΣΣΕΥΣ Σ σ ς ΣΑΣ ΑΣ. ΑΣ' Σ1",
    "καλημέρα κόσμε, Αθήνα, ΑΘΗΝΑ",
    "Москва, Санкт-Петербург, ПРИВЕТ мир",
    "Ёлка ёж Їжак Ґанок Ўзбек",
    "Српски језик, Україна, Беларусь",
    # CJK, Japanese, Korean
    "东京塔 夜景, 高清, 杰作",
    "一只可爱的猫坐在窗台上",
    "こんにちは世界、美しい風景",
    "カタカナ ひらがな 漢字 まじりの文",
    "안녕하세요 세계, 아름다운 풍경",
    "中文English混合text文字",
    "𠀀𠀁 𪜀 extension B/C ideographs",
    "㐀㐁 extension A, ㈱ ㍿ squared",
    "「かぎかっこ」、。・〜",
    # other scripts
    "مرحبا بالعالم، القاهرة",
    "שלום עולם ירושלים",
    "नमस्ते दुनिया, हिन्दी",
    "สวัสดีชาวโลก ภาษาไทย",
    "ქართული ენა, Հայերեն լեզու",
    "ᚠᚢᚦᚨᚱᚲ runes, ᎠᏍᎦᏯ cherokee",
    # emoji
    "🐱 cat 🐶 dog",
    "a happy dog 🐕‍🦺 and a family 👨‍👩‍👧‍👦",
    "thumbs up 👍🏽 👍🏻 heart ❤️ ❤ star ⭐",
    "flags 🇯🇵 🇺🇸 🇩🇪 🏳️‍🌈",
    "keycap 1️⃣ #️⃣ *️⃣",
    "😀😃😄😁😆😅😂🤣",
    "emoji🔥inside🔥words",
    # HTML entities (stay as written without ftfy)
    "&amp; &lt;b&gt;bold&lt;/b&gt; &quot;q&quot; &#39;a&#39; &nbsp; &copy;",
    "tom &amp; jerry, rock &amp;amp; roll",
    "<b>html tags</b> <br/> <img src=x>",
    # whitespace and controls
    " ",
    "   ",
    "\t\n\r",
    "   leading and trailing spaces   ",
    "tabs\tbetween\twords",
    "new\nlines\r\nand\rreturns",
    "multiple     spaces    between",
    "nbsp\u00a0space \u2003em-space \u3000ideographic \u202fnarrow",
    "line\u2028separator\u2029paragraph",
    "next\u0085line \u000bvtab \u000cformfeed",
    "file\x1cgroup\x1drecord\x1eunit\x1fsep",
    "bell\x07 escape\x1b[31mred\x1b[0m del\x7f",
    "zero\u200bwidth\u200cnon\u200djoiner",
    "\ufeffBOM at start",
    "soft\u00adhyphen",
    "private\ue000use\U000f0000",
    "unassigned\u0378\u0379 and nonchar\ufffe\uffff",
    "replacement\ufffdchar",
    "lrm\u200erlm\u200f bidi\u202aembed\u202c",
    "variation\ufe0fselector\ufe0e",
    "\x01\x02\x03",
    # special-token literals
    "<|startoftext|>",
    "<|endoftext|>",
    "a cat<|endoftext|>a dog",
    "<|startoftext|>hello<|endoftext|>",
    "!!<|endoftext|>x",
    "!!<|ENDOFTEXT|>x",
    "<|EndOfText|> <|STARTOFTEXT|>",
    "<|startoftext<|endoftext|>",
    "<|<|endoftext|>|>",
    "<|endoftext|><|endoftext|><|startoftext|>",
    "<|ſtartoftext|> it'ſ",
    "<|endoftext|> \u0301 combining after special",
    "é<|endoftext|>\u0301",
    "x <|endoftext |> <| endoftext|> < |endoftext|>",
    "hello <|endoftext|> world",
    # long prompts (truncation)
    "very " * 100 + "long",
    "a " * 80,
    "a" * 500,
    "1234567890" * 12,
    ", ".join(["masterpiece", "best quality", "ultra detailed", "8k", "photorealistic"] * 12),
    "The quick brown fox jumps over the lazy dog. " * 12,
    "Pack my box with five dozen liquor jugs! " * 10,
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" * 74,
    " ".join(["w%d" % i for i in range(40)]),
]

# Prompts given as raw bytes: invalid UTF-8 (the reference decodes with "replace").
BYTES = [
    b"invalid \xff byte",
    b"truncated \xe2\x82 sequence",
    b"overlong \xc0\xaf slash",
    b"surrogate \xed\xa0\x80 half",
    b"lone continuation \x80\x80 bytes",
    b"\xf4\x90\x80\x80 above max",
    b"caf\xc3\xa9 \xe9t\xe9 latin-1 mixed",
]

SUBJECTS = "cat dog astronaut castle robot dragon girl boy forest city ocean mountain car spaceship flower owl wolf knight wizard samurai".split()
STYLES = ("oil painting, watercolor, digital art, concept art, photograph, 3d render, pixel art, ukiyo-e, "
          "anime, sketch, charcoal drawing, impressionism, art nouveau, low poly, vaporwave").split(", ")
MODS = ("highly detailed, sharp focus, 8k, 4k, hdr, bokeh, volumetric lighting, golden hour, dramatic, "
        "intricate, elegant, cinematic, trending on artstation, by greg rutkowski, octane render, "
        "studio lighting, depth of field, matte painting, 35mm, f/2.8").split(", ")
TRICKY = list("éèêëàâäôöûüçñßæøåÆØÅŒœſİıΣσςΩωЖжЯя中文日本語한국어ÀÉÎÕÜ½²③ⅫＡａ１！’“”«»—–…•·€£¥©®™°±×÷µ¶§")
TRICKY += ["e\u0301", "a\u0308", "\u200d", "\u200b", "\u00ad", "\u00a0", "\u3000", "\t", "\n", "🐱", "👍🏽",
           "❤️", "👨‍👩‍👧", "🇯🇵", "&amp;", "<|endoftext|>", "'s", "'T", "''", "((", "))", "[", "]", ":1.2", "<lora:a:0.7>",
           "!", "!!", "wow!", "\x07", "\x1b", "\ufeff", "\u0378", "\ue000", "\u2028", "\uf900", "\U00020000", "ǅ", "ﬁ", "Ｋ", "\u212a"]


def random_prompts(n, seed=1234):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        parts = ["a " + rng.choice(STYLES) + " of a " + rng.choice(SUBJECTS)]
        for _ in range(rng.randint(0, 12)):
            r = rng.random()
            if r < 0.45:
                parts.append(rng.choice(MODS))
            elif r < 0.6:
                parts.append("(%s:%.1f)" % (rng.choice(MODS), rng.uniform(0.5, 1.6)))
            elif r < 0.85:
                w = rng.choice(SUBJECTS + MODS)
                k = rng.randint(0, len(w))
                parts.append(w[:k] + rng.choice(TRICKY) + w[k:])
            else:
                parts.append("".join(rng.choice(TRICKY) for _ in range(rng.randint(1, 5))))
        s = rng.choice([", ", " ", ",", " , "]).join(parts)
        mode = rng.random()
        if mode < 0.15:
            s = s.upper()
        elif mode < 0.25:
            s = s.title()
        elif mode < 0.3:
            s = NFD(s)
        if i % 37 == 0:  # some long ones
            s = (s + ", ") * rng.randint(3, 6)
        out.append(s)
    return out


# ---- output ----------------------------------------------------------------


def esc_bytes(b):
    """Escape raw bytes: printable code points stay as UTF-8, the rest as \\xNN."""
    out, i = [], 0
    while i < len(b):
        for n in (1, 2, 3, 4):
            try:
                ch = b[i : i + n].decode("utf-8")
                break
            except UnicodeDecodeError:
                ch = None
        if ch is None or not ch.isprintable() or ch == "\\":
            n = len(ch.encode("utf-8")) if ch is not None else 1
            out.append("".join("\\x%02x" % x for x in b[i : i + n]))
        else:
            out.append(ch)
        i += n
    return "".join(out)


def fmt_ids(ids):
    # Compress only the trailing run of the same value (the padding).
    k = len(ids)
    while k > 1 and ids[k - 1] == ids[-1]:
        k -= 1
    run = len(ids) - k
    head = [str(x) for x in ids[:k]]
    if run > 1:
        return " ".join(head + ["%d*%d" % (ids[-1], run)])
    return " ".join(str(x) for x in ids)


def main():
    hf_logging.set_verbosity_error()  # the "sequence longer than 77" warnings are expected
    with tempfile.TemporaryDirectory() as d:
        build_files(os.path.join(d, "sd1"), "<|endoftext|>")
        build_files(os.path.join(d, "sd2"), "!")
        # As diffusers loads them: CLIPTokenizer.from_pretrained(model, subfolder="tokenizer").
        sd1 = CLIPTokenizer.from_pretrained(os.path.join(d, "sd1"))
        sd2 = CLIPTokenizer.from_pretrained(os.path.join(d, "sd2"))
    assert sd1.fix_text is None and sd1.pad_token_id == 49407 and sd2.pad_token_id == 0
    # SD2's pad "!" is an added token that splits the text (tokenizer.h).
    assert sd2("hi!")["input_ids"] == [49406, 1883, 0, 49407] and sd1("hi!")["input_ids"] == [49406, 1883, 256, 49407]
    # sd-reference §1.5 vectors, as a sanity check of the reference itself.
    assert sd1("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]

    cases = [s.encode("utf-8") for s in HAND] + BYTES + [s.encode("utf-8") for s in random_prompts(420)]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    n_long = 0
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write("# CLIP tokenizer goldens: transformers %s CLIPTokenizer (slow, no ftfy), vocab built from\n"
                "# bpe_simple_vocab_16e6.txt.gz. Generated by tests/reference/gen_tokenizer_goldens.py; format there.\n"
                % transformers.__version__)
        for i, b in enumerate(cases):
            text = b.decode("utf-8", "replace")
            f.write("T " + esc_bytes(b) + "\n")
            if "<|" not in text:
                f.write("N " + esc_bytes(" ".join(sd1.nlp.tokenize(text)).encode("utf-8")) + "\n")
            ids1 = sd1(text, padding="max_length", max_length=77, truncation=True)["input_ids"]
            assert len(ids1) == 77
            f.write("1 " + fmt_ids(ids1) + "\n")
            if i % 5 == 0 or "!" in text:
                ids2 = sd2(text, padding="max_length", max_length=77, truncation=True)["input_ids"]
                f.write("2 " + fmt_ids(ids2) + "\n")
            raw = sd1(text, add_special_tokens=False)["input_ids"]
            if len(raw) > 75:
                f.write("R " + " ".join(map(str, raw)) + "\n")
                n_long += 1
    print("wrote %s: %d prompts (%d longer than 75 tokens)" % (OUT, len(cases), n_long))


if __name__ == "__main__":
    main()
