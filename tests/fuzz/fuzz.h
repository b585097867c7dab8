/* The libFuzzer entry point every target defines; tests/fuzz/fuzz-main.c replays corpora with it
 * when the targets are not built with -fsanitize=fuzzer. */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
