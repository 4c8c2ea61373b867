#!/usr/bin/env python3
"""server_clients.py PORT KEY - drives a running `sdrt serve` with the real
client packages from PyPI, unchanged: webuiapi (txt2img, img2img, inpaint,
progress, interrupt, options with a model switch, png-info, get_loras and a
<lora:NAME:W> tag) over HTTP Basic
(user:pass) and openai's images.generate with the Bearer key. Prints one
"ok NAME" / "FAIL NAME: why" line per check (run by tests/test_server.c,
with build/testenv from `make testenv`)."""
import base64
import io
import sys
import threading
import time

import openai
import webuiapi
from PIL import Image

port, key = int(sys.argv[1]), sys.argv[2]
failed = 0


def check(cond, name, detail=""):
    global failed
    if cond:
        print(f"ok {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name}: {detail}", flush=True)


def run(name, fn):
    try:
        fn()
    except Exception as e:  # a client error is a failed check, not a crash
        check(False, name, repr(e))


api = webuiapi.WebUIApi(host="127.0.0.1", port=port, username="user", password="pass", sampler="Euler a", steps=3)
state = {}


def t_txt2img():
    r = api.txt2img(prompt="a red cube", negative_prompt="blurry", seed=11, width=64, height=64, cfg_scale=7.5,
                    sampler_name="Euler a", steps=3)
    state["img"] = r.image
    check(r.image.size == (64, 64) and r.info["seed"] == 11 and r.info["all_seeds"] == [11]
          and "Seed: 11" in r.info["infotexts"][0], "webuiapi: txt2img", str(r.info)[:200])


def t_img2img():
    r = api.img2img(images=[state["img"]], prompt="a blue cube", denoising_strength=0.6, seed=12, width=64, height=64,
                    steps=4)
    check(r.image.size == (64, 64) and r.info["seed"] == 12, "webuiapi: img2img")


def t_inpaint():
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    r = api.img2img(images=[state["img"]], mask_image=mask, inpainting_fill=1, mask_blur=2, prompt="a hole",
                    denoising_strength=1.0, seed=13, width=64, height=64, steps=4)
    check(r.image.size == (64, 64), "webuiapi: inpaint (img2img with mask_image)")


def t_png_info():
    r = api.png_info(state["img"])
    info = r.info if isinstance(r.info, str) else str(r.info)
    check("Seed: 11" in info and "Negative prompt: blurry" in info, "webuiapi: png_info", info[:200])


def t_progress_interrupt():
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("r", api.txt2img(prompt="slow", seed=1, width=64, height=64, steps=150)))
    th.start()
    seen, p = 0, {}
    for _ in range(300):
        p = api.get_progress()
        seen = p["state"]["sampling_step"]
        if seen >= 6 and p["current_image"]:  # the server's default preview period is 5 steps
            break
        time.sleep(0.02)
    check(seen >= 6 and 0 < p["progress"] < 1 and p["eta_relative"] >= 0 and p["current_image"],
          "webuiapi: get_progress while running", str({k: p.get(k) for k in ("progress", "eta_relative", "state")}))
    r = api.interrupt()
    th.join(60)
    res = out.get("r")
    n = len(res.images) if res is not None else -1
    check(not th.is_alive() and isinstance(r, dict) and n == 1 and res.images[0].size == (64, 64),
          "webuiapi: interrupt ends the running txt2img and returns the interrupted iteration's image (as A1111)",
          f"{n} images")


def t_options():
    names = api.util_get_model_names()
    check(len(names) >= 2, "webuiapi: sd-models lists the --models-dir models", str(names))
    other = [n for n in names if n != api.util_get_current_model()][0]
    api.util_set_model(other)
    check(api.util_get_current_model() == other, "webuiapi: options sd_model_checkpoint switches the model", other)
    opts = api.get_options()
    api.set_options(opts)  # the whole dict back
    r = api.txt2img(prompt="after switch", seed=2, width=64, height=64, steps=2)
    check(r.image.size == (64, 64) and r.info["sd_model_name"] == other, "webuiapi: txt2img on the switched model")


def t_loras():
    names = {l["name"]: l for l in api.get_loras()}
    check("sd1_kohya" in names and names["sd1_kohya"]["alias"] == "kohya_alias", "webuiapi: get_loras",
          str(list(names))[:200])
    r = api.txt2img(prompt="a red cube <lora:kohya_alias:0.8>", seed=12, width=64, height=64, steps=2)
    check(r.image.size == (64, 64) and 'Lora hashes: "kohya_alias: ' in r.info["infotexts"][0],
          "webuiapi: txt2img with a <lora:NAME:W> tag", str(r.info)[:300])


def t_openai():
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)
    r = client.images.generate(prompt="a cat", n=1, size="64x64", response_format="b64_json",
                               extra_body={"steps": 2, "seed": 5})
    img = Image.open(io.BytesIO(base64.b64decode(r.data[0].b64_json)))
    check(img.size == (64, 64), "openai: images.generate gets an image")
    models = client.models.list()
    check(len(models.data) >= 1, "openai: models.list")


for name, fn in [("webuiapi: txt2img", t_txt2img), ("webuiapi: img2img", t_img2img), ("webuiapi: inpaint", t_inpaint),
                 ("webuiapi: png_info", t_png_info), ("webuiapi: progress/interrupt", t_progress_interrupt),
                 ("webuiapi: loras", t_loras), ("webuiapi: options", t_options), ("openai", t_openai)]:
    run(name, fn)
sys.exit(1 if failed else 0)
