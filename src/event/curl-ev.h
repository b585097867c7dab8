/* libcurl's multi interface driven by the daemon's libev loop: sockets become ev_io watchers, curl's
 * timeout an ev_timer. No thread, no blocking call. */
#pragma once

#include <curl/curl.h>
#include <ev.h>

typedef struct CurlEv CurlEv;

/* Called once per transfer when it ended (result CURLE_OK or the error); the easy handle is
 * removed from the multi handle before and belongs to the caller again. */
typedef void (*CurlDone)(CURL *easy, CURLcode result, void *userdata);

int curl_ev_new(struct ev_loop *loop, CurlEv **ret);
CurlEv *curl_ev_free(CurlEv *c);

/* Starts a transfer; CURLOPT_PRIVATE is used by this module. */
int curl_ev_add(CurlEv *c, CURL *easy, CurlDone done, void *userdata);
/* Stops a transfer without calling done. */
void curl_ev_remove(CurlEv *c, CURL *easy);
