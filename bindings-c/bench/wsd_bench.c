/* Latency of IsWorkspaceExists from C, in-process: the typed call and the protobuf call.
 * Usage: wsd_bench <scratch folder> [calls]. Prints median, p99 and sequential throughput. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wsd.h"

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *name, uint64_t *samples, int n, uint64_t total_ns) {
  qsort(samples, (size_t)n, sizeof(uint64_t), cmp);
  printf("| C %s | %.2f | %.2f | %.0f |\n", name, samples[n / 2] / 1000.0, samples[n * 99 / 100] / 1000.0,
         n / (total_ns / 1e9));
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s <scratch folder> [calls]\n", argv[0]);
    return 2;
  }
  int n = argc > 2 ? atoi(argv[2]) : 200000;
  if (n < 100) n = 100;
  char config[1024];
  snprintf(config, sizeof(config),
           "{\"working_area\":\"%s/area\",\"storage\":{\"local_path\":\"%s/storage\"}}", argv[1], argv[1]);
  wsd_daemon *d = NULL;
  if (wsd_daemon_new(config, &d) != WSD_OK) {
    fprintf(stderr, "wsd_daemon_new: %s\n", wsd_last_error_message());
    return 1;
  }
  uint64_t *samples = malloc(sizeof(uint64_t) * (size_t)n);
  if (!samples) return 1;
  bool exists = true;
  for (int i = 0; i < 1000; i++) wsd_is_workspace_exists(d, "bench", &exists);

  uint64_t start = now_ns();
  for (int i = 0; i < n; i++) {
    uint64_t t = now_ns();
    if (wsd_is_workspace_exists(d, "bench", &exists) != WSD_OK || exists) return 1;
    samples[i] = now_ns() - t;
  }
  report("typed call (wsd_is_workspace_exists)", samples, n, now_ns() - start);

  const uint8_t request[] = {0x0a, 5, 'b', 'e', 'n', 'c', 'h'}; /* IsWorkspaceExistsRequest{id:"bench"} */
  const char *method = "/wsdaemon.WorkspaceContentService/IsWorkspaceExists";
  start = now_ns();
  for (int i = 0; i < n; i++) {
    uint8_t *resp = NULL;
    size_t len = 0;
    uint64_t t = now_ns();
    if (wsd_call(d, method, request, sizeof(request), &resp, &len) != WSD_OK) return 1;
    wsd_bytes_free(resp, len);
    samples[i] = now_ns() - t;
  }
  report("protobuf call (wsd_call)", samples, n, now_ns() - start);
  free(samples);
  wsd_daemon_free(d);
  return 0;
}
