/* Strings in a request, judged on the wire before protobuf-c unpacks them. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* -EINVAL, with why ("config.metadata.name holds a NUL byte") filled in, when a string field of the
 * message d in buf holds a NUL byte, or a control character where a name, an id or a path belongs.
 * 0 otherwise, also for bytes that do not decode (protobuf-c's unpacking reports those). */
int cri_check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, char *why,
                      size_t why_size);
