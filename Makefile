# sdrt - Stable Diffusion inference runtime in C.
#
#   make            build build/sdrt and build/libsdrt.a
#   make deps       install the Debian packages sdrt needs (as root; no-op if present)
#   make check      deps + build + every test (normal and ASan+UBSan builds)
#   make vocab      fetch the CLIP BPE vocabulary into build/vocab/ (tests need it)
#   make demo       deps + build + the main job on the built-in tiny model
#   make bench      op/phase benchmarks (medians, GFLOP/s, machine sgemm peak)
#   make fuzz       run every fuzz target (tests/fuzz/) for FUZZ_SECONDS each
#   make parity-full  full-size random SD1.5/SD2.1 checkpoints through sdrt and diffusers
#   make parity-full-sdxl  the same for a full-size random SDXL checkpoint
#   make bench-peers  sdrt side by side with OpenVINO and stable-diffusion.cpp (full-size SD 1.5, slow)
#   make bench-peers-sdxl  sdrt side by side with OpenVINO, full-size SDXL at 1024x1024 (slower)
#   make reference-venv  .venv/ with PyTorch/diffusers for tests/reference/ (tooling only)
#
# snprintf truncation is intended everywhere it happens (names, messages),
# hence -Wno-format-truncation.
# Variables: BUILD (output dir), SAN=1 (ASan+UBSan), ARCH (default native), V=1.

BUILD   ?= build
ARCH    ?= native
CC      ?= cc
ifeq ($(CC),cc)
CC      := gcc
endif

WARN    := -Wall -Wextra -Werror -Wno-unknown-pragmas -Wno-format-truncation
CSTD    := -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -DCL_TARGET_OPENCL_VERSION=120
OPT     := -O3 -march=$(ARCH) -fno-math-errno
ifeq ($(SAN),1)
OPT     := -O1 -g -march=$(ARCH) -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
           -DSDRT_POISON
endif
# Every source folder is on the include path; headers are included by name alone.
HOST_DIRS := $(sort $(dir $(wildcard host/*/*.c host/*/*.h)))
INC     := $(patsubst %/,-I%,$(HOST_DIRS)) -Icpu -Icl -I$(BUILD)/gen
CFLAGS  += $(CSTD) $(OPT) $(WARN) -fopenmp -pthread -MMD -MP $(INC)
LDLIBS  += -ldnnl -lclblast -lOpenCL -lmicrohttpd -ljansson -lhiredis -lpng -lz -lm -fopenmp -pthread
ifeq ($(SAN),1)
LDLIBS  += -fsanitize=address,undefined
endif

LIB_SRC  := $(filter-out host/cli/%,$(wildcard host/*/*.c)) $(wildcard cpu/*.c) $(wildcard cl/*.c)
CMD_SRC  := $(wildcard host/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC:= $(wildcard bench/bench_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
# OpenCL kernel sources are embedded into the library (cl/embed_kernels.sh).
CL_KERNELS := $(sort $(wildcard cl/kernels/*.cl))
LIB_OBJ  += $(BUILD)/obj/gen/cl_kernels.o
CMD_OBJ  := $(CMD_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN:= $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
# Fuzz targets (tests/fuzz/fuzz_<target>.c), replayed by the tests as test_fuzz_<target>.
FUZZ_TARGETS := safetensors png prompt tokenizer json lora request wire
FUZZ_REPLAY := $(FUZZ_TARGETS:%=$(BUILD)/tests/test_fuzz_%)
LIB      := $(BUILD)/libsdrt.a

DEB_PKGS := gcc make libc6-dev libdnnl-dev libclblast-dev ocl-icd-opencl-dev opencl-headers \
            pocl-opencl-icd clinfo libpng-dev zlib1g-dev clang libclang-rt-14-dev python3 python3-venv python3-pip \
            libmicrohttpd-dev libjansson-dev libhiredis-dev redis-server
# What the tests need beyond building: headless Chromium drives the server's page.
TEST_DEB_PKGS := chromium

.PHONY: all deps test-deps install-debs check test test-asan demo bench fuzz clean tests benches vocab reference-venv parity-full parity-full-sdxl \
        testenv peers-venv bench-peers bench-peers-sdxl bench-chart

all: $(BUILD)/sdrt $(LIB)

Q := $(if $(V),,@)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/gen/cl_kernels.c: $(CL_KERNELS) cl/embed_kernels.sh
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  GEN     $@")
	$(Q)sh cl/embed_kernels.sh $(CL_KERNELS) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/cl_kernels.o: $(BUILD)/gen/cl_kernels.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# Unicode tables for the tokenizer, generated from Python's unicodedata (never committed).
$(BUILD)/gen/unicode_tables.h: host/text/gen_unicode.py
	@mkdir -p $(dir $@)
	python3 $< $@.tmp && mv $@.tmp $@
$(BUILD)/obj/host/text/unicode.o: $(BUILD)/gen/unicode_tables.h

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/sdrt: $(CMD_OBJ) $(LIB)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $(CMD_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -Itests -o $@ $(filter %.c,$^) $(LIB) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -Ibench -Itests -o $@ $(filter %.c,$^) $(LIB) $(LDLIBS)

# The demo model's judge, shared by its tests and the bench (tests/demo_judge.h).
DEMO_JUDGE_USERS := $(BUILD)/tests/test_demo_meaning $(BUILD)/tests/test_demo_lora $(BUILD)/tests/test_preview \
                    $(BUILD)/bench/bench_demo
$(DEMO_JUDGE_USERS): tests/demo_judge.c tests/demo_judge.h

tests: vocab testenv $(TEST_BIN) $(FUZZ_REPLAY) build/models/demo.safetensors

# The demo model as one LDM single file: the folder's F16 tensors under the
# single file's names (byte-identical to what train_demo.py writes).
build/models/demo.safetensors: tests/reference/demo_single.py tests/models/demo.single.json $(wildcard tests/models/demo/*/*.safetensors)
	@mkdir -p $(dir $@)
	python3 tests/reference/demo_single.py build tests/models/demo tests/models/demo.single.json $@

# The real client packages the server tests drive (tests/server_clients.py),
# pinned, from PyPI into build/testenv (Debian's python3 -m venv).
TESTENV_PKGS := webuiapi==0.9.17 openai==1.54.0 httpx==0.27.2
TESTENV_STAMP := build/testenv/.stamp-webuiapi-0.9.17-openai-1.54.0-httpx-0.27.2
testenv: $(TESTENV_STAMP)
$(TESTENV_STAMP):
	@rm -rf build/testenv && /usr/bin/python3 -m venv build/testenv
	@echo "testenv: $(TESTENV_PKGS) from PyPI -> build/testenv"
	@build/testenv/bin/pip install -q --disable-pip-version-check $(TESTENV_PKGS)
	@touch $@
benches: $(BENCH_BIN)

# OpenAI's CLIP BPE vocabulary, taken from the open_clip wheel on PyPI and checked
# against its known sha256; never committed. Programs may use another copy via SDRT_VOCAB.
VOCAB_PKG    := open-clip-torch==2.24.0
VOCAB_GZ     := build/vocab/bpe_simple_vocab_16e6.txt.gz
VOCAB_SHA256 := 924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a
vocab: $(VOCAB_GZ)
$(VOCAB_GZ):
	@mkdir -p build/vocab/wheel
	@echo "vocab: $(VOCAB_PKG) from PyPI -> $@"
	@python3 -m pip download --no-deps --disable-pip-version-check -q -d build/vocab/wheel $(VOCAB_PKG)
	@python3 -c 'import glob, hashlib, sys, zipfile; \
	  whl = glob.glob("build/vocab/wheel/open_clip_torch-*.whl")[0]; \
	  d = zipfile.ZipFile(whl).read("open_clip/$(notdir $@)"); \
	  h = hashlib.sha256(d).hexdigest(); \
	  h == "$(VOCAB_SHA256)" or sys.exit("vocab: %s has sha256 %s, expected $(VOCAB_SHA256)" % (whl, h)); \
	  open("$@.tmp", "wb").write(d)'
	@mv $@.tmp $@ && rm -rf build/vocab/wheel

# Installs missing Debian packages (needs root). Both `check` and `demo` use it.
deps:
	@$(MAKE) --no-print-directory install-debs PKGS="$(DEB_PKGS)"
test-deps: deps
	@$(MAKE) --no-print-directory install-debs PKGS="$(TEST_DEB_PKGS)"
install-debs:
	@missing=$$(for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: all Debian packages present"; fi

test: all tests
	@tests/run.sh $(BUILD)

test-asan:
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 all tests

check: test-deps
	@$(MAKE) --no-print-directory all tests
	@$(MAKE) --no-print-directory test-asan
	@SDRT_TEST_SAN=1 tests/run.sh $(BUILD) build/asan

# The main job on the built-in demo model: tests/models/demo is a tiny SD 1.x
# architecture model trained by tests/reference/train_demo.py on 32x32 scenes
# "a <red|green|blue|yellow> <circle|square|triangle> on a <white|black|gray>
# background". `make demo` draws one such prompt at random and prints it
# (DEMO_PROMPT="a red circle on a white background" picks one; DEMO_MODEL=path
# runs another model, e.g. build/models/demo.safetensors, the same model as one
# LDM file, built from the folder by tests/reference/demo_single.py and the
# recipe tests/models/demo.single.json: weights are never committed twice).
DEMO_MODEL ?= tests/models/demo
DEMO_PROMPT ?=
DEMO_ARGS ?= --steps 20 --sampler "Euler a" --cfg-scale 7.5 --width 32 --height 32 --seed -1
demo: deps all vocab
	@p='$(DEMO_PROMPT)'; \
	if [ -z "$$p" ]; then p=$$(awk 'BEGIN { srand(); split("red green blue yellow", c); split("circle square triangle", s); \
	  split("white black gray", b); printf "a %s %s on a %s background", c[int(rand() * 4) + 1], s[int(rand() * 3) + 1], \
	  b[int(rand() * 3) + 1] }'); fi; \
	echo "demo: prompt \"$$p\""; \
	$(BUILD)/sdrt txt2img --model $(DEMO_MODEL) --prompt "$$p" $(DEMO_ARGS) --preview-every 5 --preview-dir build \
	  --output build/demo.png
	@echo "demo: wrote build/demo.png (previews build/preview-*.png)"

# Op benchmarks (bench/*.c), then the same model graphs on both backends side
# by side (the built-in tiny model; BENCH_MODEL=path for a real checkpoint).
BENCH_MODEL ?= tests/models/tiny-sd1
bench: all benches testenv
	@for b in $(filter-out %/bench_lora %/bench_vae,$(BENCH_BIN)); do $$b || exit 1; done
	$(BUILD)/bench/bench_lora tests/models/demo tests/models/demo-lora/orange.safetensors --size 8
	$(BUILD)/bench/bench_vae -m $(BENCH_MODEL) -s 256
	OMP_WAIT_POLICY=passive $(BUILD)/sdrt bench --model $(BENCH_MODEL) --backends cpu,opencl --width 256 --height 256 --runs 3 --profile
	OMP_WAIT_POLICY=passive build/testenv/bin/python bench/server_bench.py $(BUILD)/sdrt
	OMP_WAIT_POLICY=passive build/testenv/bin/python bench/scaleout_bench.py $(BUILD)/sdrt

# Side by side with the peer runtimes (docs/benchmarks.md, "Side by side with
# OpenVINO and stable-diffusion.cpp"): OpenVINO at its default precision and at
# f32 (bench/peer_openvino.py), sdrt --precision f32 and auto, and
# stable-diffusion.cpp (bench/peer_sdcpp.py) on the same random-weight full-size
# SD 1.5, 512x512, Euler, CFG 7.5, PEERS_STEPS steps, one cold process each, back
# to back; one table of ratios against OpenVINO's default with the CPU's ISA.
# The checkpoint and its diffusers folder come from PEERS_MODELS (generated there
# by tests/reference/gen_full.py when missing: ~10 GB of memory, ~15 min); the
# OpenVINO IR is exported once into build/peers/ (delete it to re-export).
# PEERS_ONLY picks the runs (bench/bench_peers.py --help; the last two are
# `sdrt bench --json --profile` for the per-op charts). PEERS_LOCK=FILE runs each heavy process under `flock FILE nice -n 5`.
# The peers are tooling only, never dependencies of sdrt: build/peers-venv holds
# them (pinned: bench/requirements-peers.txt; several GB from PyPI, once);
# stable-diffusion.cpp is compiled by pip for this CPU (GGML_NATIVE).
PEERS_MODELS  ?= models
PEERS_STEPS   ?= 4
PEERS_THREADS ?= $(shell nproc)
PEERS_LOCK    ?=
PEERS_ONLY    ?= openvino-default,sdrt-auto,sdrt-f32,openvino-f32,sdcpp,sdrt-bench-f32,sdrt-bench-auto
PEERS_VENV    ?= build/peers-venv
PEERS_CKPT    := $(PEERS_MODELS)/sd15-random-f16.safetensors
PEERS_FOLDER  := $(PEERS_MODELS)/sd15-random-f16
PEERS_IR      := build/peers/sd15-random-ov
PEERS_OUT     := build/bench-peers
PEERS_DEBS    := python3-venv python3-pip python3-matplotlib cmake g++ time
PEERS_RUN     := $(if $(PEERS_LOCK),flock $(PEERS_LOCK) nice -n 5 ,)

peers-venv: $(PEERS_VENV)/.stamp
$(PEERS_VENV)/.stamp: bench/requirements-peers.txt
	@missing=$$(for p in $(PEERS_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@rm -rf $(PEERS_VENV) && /usr/bin/python3 -m venv $(PEERS_VENV)
	@echo "peers-venv: OpenVINO, optimum-intel, torch (several GB) from PyPI -> $(PEERS_VENV)"
	$(PEERS_VENV)/bin/pip install -q --disable-pip-version-check $$(grep -v '^#\|stable-diffusion-cpp' bench/requirements-peers.txt)
	CMAKE_ARGS="-DGGML_NATIVE=ON" $(PEERS_VENV)/bin/pip install -q --disable-pip-version-check --no-binary stable-diffusion-cpp-python \
	  $$(grep '^stable-diffusion-cpp' bench/requirements-peers.txt)
	@touch $@

$(PEERS_CKPT):
	$(MAKE) reference-venv
	mkdir -p $(PEERS_MODELS)
	$(PEERS_RUN)nice -n 10 .venv/bin/python tests/reference/gen_full.py --model sd15 --dtype f16 --folder --out $(PEERS_MODELS)

$(PEERS_IR)/unet/openvino_model.xml: | $(PEERS_CKPT) $(PEERS_VENV)/.stamp $(VOCAB_GZ)
	@[ -f $(PEERS_FOLDER)/unet/config.json ] || { echo "$(PEERS_FOLDER)/ missing: delete $(PEERS_CKPT) to regenerate both"; exit 1; }
	$(PEERS_RUN)$(PEERS_VENV)/bin/python bench/peer_openvino.py export --vocab $(VOCAB_GZ) $(PEERS_FOLDER) $(PEERS_IR)

bench-peers: all vocab peers-venv $(PEERS_CKPT) $(PEERS_IR)/unet/openvino_model.xml
	/usr/bin/python3 bench/bench_peers.py --model $(PEERS_CKPT) --ir $(PEERS_IR) --python $(PEERS_VENV)/bin/python \
	  --steps $(PEERS_STEPS) --threads $(PEERS_THREADS) --only $(PEERS_ONLY) --out $(PEERS_OUT) $(if $(PEERS_LOCK),--lock $(PEERS_LOCK) --nice 5,)
	$(MAKE) bench-chart

# The same for the full-size random SDXL base (issue 12): OpenVINO default and sdrt
# --precision auto back to back, 1024x1024, Euler, CFG 7.5, PEERS_SDXL_STEPS steps,
# negative prompt "blurry". The single file comes from tests/reference/gen_full_sdxl.py
# (~10 GB of memory); its diffusers folder, with exactly its tensors, from
# tests/reference/sdxl_single_to_folder.py (streamed, verified against diffusers'
# converters); OpenVINO's IR is exported with fp16 weights (the file's precision)
# once into build/peers/. Every heavy step runs under PEERS_LOCK when set.
PEERS_SDXL_STEPS  ?= 3
PEERS_SDXL_ONLY   ?= openvino-default,sdrt-auto
PEERS_SDXL_CKPT   := $(PEERS_MODELS)/sdxl-random-f16.safetensors
PEERS_SDXL_FOLDER := $(PEERS_MODELS)/sdxl-random-f16
PEERS_SDXL_IR     := build/peers/sdxl-random-ov
PEERS_SDXL_OUT    := build/bench-peers-sdxl

$(PEERS_SDXL_CKPT):
	$(MAKE) reference-venv
	mkdir -p $(PEERS_MODELS)
	$(PEERS_RUN)nice -n 10 .venv/bin/python tests/reference/gen_full_sdxl.py --out $(PEERS_MODELS)

$(PEERS_SDXL_FOLDER)/unet/config.json: | $(PEERS_SDXL_CKPT)
	$(MAKE) reference-venv
	$(PEERS_RUN).venv/bin/python tests/reference/sdxl_single_to_folder.py $(PEERS_SDXL_CKPT) $(PEERS_SDXL_FOLDER)

$(PEERS_SDXL_IR)/unet/openvino_model.xml: | $(PEERS_SDXL_FOLDER)/unet/config.json $(PEERS_VENV)/.stamp $(VOCAB_GZ)
	$(PEERS_RUN)$(PEERS_VENV)/bin/python bench/peer_openvino.py export --vocab $(VOCAB_GZ) --weight-format fp16 \
	  $(PEERS_SDXL_FOLDER) $(PEERS_SDXL_IR)

bench-peers-sdxl: all vocab peers-venv $(PEERS_SDXL_CKPT) $(PEERS_SDXL_IR)/unet/openvino_model.xml
	/usr/bin/python3 bench/bench_peers.py --family sdxl --model $(PEERS_SDXL_CKPT) --ir $(PEERS_SDXL_IR) \
	  --python $(PEERS_VENV)/bin/python --steps $(PEERS_SDXL_STEPS) --threads $(PEERS_THREADS) --only $(PEERS_SDXL_ONLY) \
	  --out $(PEERS_SDXL_OUT) $(if $(PEERS_LOCK),--lock $(PEERS_LOCK) --nice 5,)

# Charts (bench/chart.py, Debian's matplotlib): the bench-peers table and, when
# present, `sdrt bench --json` files (CHART_BENCH) per phase and per op, as SVG
# and PNG into CHART_OUT (docs/img holds the committed ones).
CHART_OUT   ?= $(PEERS_OUT)
CHART_BENCH ?= $(wildcard $(PEERS_OUT)/sdrt-bench-*.json)
bench-chart:
	@dpkg -s python3-matplotlib >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-matplotlib; }
	/usr/bin/python3 bench/chart.py --peers $(PEERS_OUT)/results.json $(CHART_BENCH:%=--bench %) --out $(CHART_OUT)

# Fuzzing (docs/architecture.md "Tests"): one libFuzzer target per parser of untrusted
# input, each built with clang from the sources it exercises; `make fuzz` runs
# each for FUZZ_SECONDS on its committed corpus tests/fuzz/<target>/ (new
# inputs go to $(BUILD)/fuzz/<target>-corpus). `make tests` also builds each as
# $(BUILD)/tests/test_fuzz_<target> (gcc, this build's flags, tests/fuzz/replay.c
# instead of libFuzzer), which tests/run.sh runs to replay the corpus.
FUZZ_SECONDS ?= 60
FUZZ_SRC_safetensors := host/io/safetensors.c host/io/json.c host/io/weights.c host/core/error.c host/core/tensor.c \
                        host/core/hashmap.c
FUZZ_SRC_png         := host/io/png_io.c host/core/error.c
FUZZ_SRC_prompt      := host/text/prompt.c host/core/error.c
FUZZ_SRC_lora        := host/lora/lora_key.c host/core/error.c
FUZZ_SRC_tokenizer   := host/text/tokenizer.c host/text/unicode.c host/io/json.c host/core/error.c host/core/hashmap.c
FUZZ_SRC_json        := host/io/json.c host/model/model_config.c host/io/weights.c host/io/safetensors.c \
                        host/core/error.c host/core/tensor.c host/core/hashmap.c
FUZZ_SRC_request     := host/server/reqparse.c host/server/base64.c host/io/png_io.c host/core/error.c \
                        $(filter-out host/gen/sampler_impl.h,$(wildcard host/gen/sampler*.c)) host/gen/noise_schedule.c host/gen/rng.c
FUZZ_SRC_wire        := host/server/req_wire.c $(FUZZ_SRC_request) host/text/prompt.c
FUZZ_MAXLEN_request  := 16384
FUZZ_MAXLEN_wire     := 16384
FUZZ_MAXLEN_safetensors := 65536
FUZZ_MAXLEN_png      := 65536
FUZZ_MAXLEN_prompt   := 4096
FUZZ_MAXLEN_lora     := 4096
FUZZ_MAXLEN_tokenizer := 8192
FUZZ_MAXLEN_json     := 16384
FUZZ_BIN    := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)

.SECONDEXPANSION:
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(BUILD)/gen/unicode_tables.h $$(FUZZ_SRC_$$*)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  FUZZ    $@")
	$(Q)clang $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all $(INC) -Itests/fuzz -o $@ \
	  $< $(FUZZ_SRC_$*) -ljansson -lpng -lz -lm

$(BUILD)/tests/test_fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/fuzz_util.h $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -Itests/fuzz -DFUZZ_TARGET='"$*"' -o $@ tests/fuzz/replay.c $< $(LIB) $(LDLIBS)

fuzz: deps vocab $(FUZZ_TARGETS:%=fuzz-%)
fuzz-%: $(BUILD)/fuzz/fuzz_%
	@mkdir -p $(BUILD)/fuzz/$*-corpus
	@echo "fuzz $*: $(FUZZ_SECONDS) s"
	$(BUILD)/fuzz/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAXLEN_$*) -artifact_prefix=$(BUILD)/fuzz/$*- \
	  $(BUILD)/fuzz/$*-corpus tests/fuzz/$*

clean:
	rm -rf build

# PyTorch/diffusers reference tooling (tests/reference/README.md); never linked into sdrt.
# torch is Debian's CPU-only python3-torch, seen through --system-site-packages, hence
# Debian's own python3 (not whatever python3 is first on PATH). Idempotent: redone only
# when requirements.txt changes.
REF_DEB_PKGS := python3 python3-venv python3-pip python3-torch python3-numpy

reference-venv: .venv/.reference-stamp

.venv/.reference-stamp: tests/reference/requirements.txt tests/reference/requirements-nodeps.txt
	@missing=$$(for p in $(REF_DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@grep -qs 'include-system-site-packages = true' .venv/pyvenv.cfg || \
	  { rm -rf .venv && /usr/bin/python3 -m venv --system-site-packages .venv; }
	.venv/bin/pip install -q --disable-pip-version-check -r tests/reference/requirements.txt
	.venv/bin/pip install -q --disable-pip-version-check --no-deps -r tests/reference/requirements-nodeps.txt
	@touch $@

# Full-size parity: random-weight SD1.5 and SD2.1 checkpoints (generated on
# demand into models/, never committed) through sdrt and diffusers.
PARITY_MODELS ?= sd15 sd21
$(BUILD)/tests/parity_full: tests/parity/parity_full.c $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
$(BUILD)/tests/random_like: tests/parity/random_like.c $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
$(BUILD)/tests/parity_full_sdxl: tests/parity/parity_full_sdxl.c $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -Itests -o $@ $< $(LIB) $(LDLIBS)
# Full-size random SDXL (tests/reference/gen_full_sdxl.py, ~7 GB f16 in models/).
parity-full-sdxl: deps reference-venv all $(BUILD)/tests/parity_full_sdxl
	@[ -f models/sdxl-random-f16.safetensors ] || nice -n 10 .venv/bin/python tests/reference/gen_full_sdxl.py || exit 1
	$(BUILD)/tests/parity_full_sdxl models/sdxl-random-f16.safetensors models/sdxl-random-golden.safetensors
parity-full: deps reference-venv all $(BUILD)/tests/parity_full $(BUILD)/tests/random_like
	@for m in $(PARITY_MODELS); do \
	  [ -f models/$$m-random-f16.safetensors ] || nice -n 10 .venv/bin/python tests/reference/gen_full.py --model $$m --dtype f16 || exit 1; \
	  $(BUILD)/tests/parity_full models/$$m-random-f16.safetensors models/$$m-random-golden.safetensors || exit 1; \
	done

-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d)
