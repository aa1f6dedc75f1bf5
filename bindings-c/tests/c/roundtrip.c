/* init, write, backup, snapshot, dispose, restore through the typed, protobuf and JSON calls, and
 * the asynchronous call with cancellation. Usage: roundtrip <scratch folder> */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

static const char *CONTENT = "/wsdaemon.WorkspaceContentService/";

static char method_buf[128];
static const char *method(const char *name) {
  snprintf(method_buf, sizeof(method_buf), "%s%s", CONTENT, name);
  return method_buf;
}

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int calls;
  wsd_status status;
  size_t response_len;
  unsigned char response[256];
  char reason[64];
} outcome;

static void on_done(void *user_data, wsd_status status, const uint8_t *response, size_t len,
                    const char *message, const char *reason) {
  outcome *o = user_data;
  pthread_mutex_lock(&o->lock);
  o->calls++;
  o->status = status;
  o->response_len = len < sizeof(o->response) ? len : sizeof(o->response);
  if (len) memcpy(o->response, response, o->response_len);
  /* Errors carry a message and a reason, successes neither. */
  if ((status != WSD_OK) != (message != NULL) || (status != WSD_OK) != (reason != NULL)) o->status = WSD_UNKNOWN;
  if (reason) snprintf(o->reason, sizeof(o->reason), "%s", reason);
  pthread_cond_broadcast(&o->cond);
  pthread_mutex_unlock(&o->lock);
}

static int contains(const uint8_t *buf, size_t len, const char *needle, size_t n) {
  for (size_t i = 0; i + n <= len; i++)
    if (memcmp(buf + i, needle, n) == 0) return 1;
  return 0;
}

static void outcome_init(outcome *o) {
  memset(o, 0, sizeof(*o));
  pthread_mutex_init(&o->lock, NULL);
  pthread_cond_init(&o->cond, NULL);
}

static void outcome_wait(outcome *o, int calls) {
  pthread_mutex_lock(&o->lock);
  while (o->calls < calls) pthread_cond_wait(&o->cond, &o->lock);
  pthread_mutex_unlock(&o->lock);
}

static void outcome_destroy(outcome *o) {
  pthread_mutex_destroy(&o->lock);
  pthread_cond_destroy(&o->cond);
}

int main(int argc, char **argv) {
  CHECK(argc == 2);
  const char *dir = argv[1];
  CHECK(strcmp(wsd_version(), WSD_VERSION) == 0);

  char config[1024];
  snprintf(config, sizeof(config),
           "working_area = \"%s/area\"\n[storage]\nlocal_path = \"%s/storage\"\n"
           "[limits]\nshutdown_grace_secs = 1\n",
           dir, dir);
  wsd_daemon *d = NULL;
  CHECK_STATUS(wsd_daemon_new(config, &d), WSD_OK);
  CHECK(d != NULL);

  /* JSON: init an empty workspace. */
  char *json = NULL;
  CHECK_STATUS(wsd_call_json(d, method("InitWorkspace"),
                             "{\"id\":\"ws1\",\"metadata\":{\"owner\":\"u1\",\"metaId\":\"m1\"},"
                             "\"initializer\":{\"empty\":{}}}",
                             &json),
               WSD_OK);
  CHECK(strcmp(json, "{}") == 0);
  wsd_string_free(json);

  char path[1024];
  snprintf(path, sizeof(path), "%s/area/ws1/hello.txt", dir);
  write_file(path, "hello from C\n");

  /* Typed calls. */
  bool exists = false;
  CHECK_STATUS(wsd_is_workspace_exists(d, "ws1", &exists), WSD_OK);
  CHECK(exists);
  CHECK(wsd_last_error_message() == NULL);
  CHECK_STATUS(wsd_wait_for_init(d, "ws1"), WSD_OK);
  char *url = NULL;
  CHECK_STATUS(wsd_backup_workspace(d, "ws1", &url), WSD_OK);
  CHECK(strcmp(url, "workspaces/m1/full.tar.zst@gitpod-user-u1") == 0);
  wsd_string_free(url);
  char *snapshot = NULL;
  CHECK_STATUS(wsd_take_snapshot(d, "ws1", false, &snapshot), WSD_OK);
  CHECK(strncmp(snapshot, "workspaces/m1/snapshot-", 23) == 0);
  write_file(path, "changed after the snapshot\n");
  char *disposed = NULL;
  CHECK_STATUS(wsd_dispose_workspace(d, "ws1", true, false, &disposed), WSD_OK);
  CHECK(strcmp(disposed, "{}") == 0);
  wsd_string_free(disposed);
  CHECK_STATUS(wsd_dispose_workspace(d, "ws1", true, false, NULL), WSD_OK); /* twice is fine */
  CHECK_STATUS(wsd_is_workspace_exists(d, "ws1", &exists), WSD_OK);
  CHECK(!exists);

  /* Protobuf: a plain init of the same meta_id restores the final backup. */
  pb metadata = {0}, empty = {0}, initializer = {0}, init = {0};
  pb_string(&metadata, 1, "u1");
  pb_string(&metadata, 2, "m1");
  pb_message(&initializer, 1, &empty); /* WorkspaceInitializer.empty = 1 */
  pb_string(&init, 1, "ws2");
  pb_message(&init, 2, &metadata);
  pb_message(&init, 3, &initializer);
  uint8_t *response = NULL;
  size_t response_len = 99;
  CHECK_STATUS(wsd_call(d, method("InitWorkspace"), init.data, init.len, &response, &response_len), WSD_OK);
  CHECK(response_len == 0 && response == NULL); /* empty responses are NULL */
  wsd_bytes_free(response, response_len);
  snprintf(path, sizeof(path), "%s/area/ws2/hello.txt", dir);
  CHECK(strcmp(read_file(path), "changed after the snapshot\n") == 0);

  pb exists_req = {0};
  pb_string(&exists_req, 1, "ws2");
  CHECK_STATUS(wsd_call(d, method("IsWorkspaceExists"), exists_req.data, exists_req.len, &response, &response_len), WSD_OK);
  CHECK(response_len == 2 && response[0] == 0x08 && response[1] == 0x01); /* exists = true */
  wsd_bytes_free(response, response_len);

  /* JSON: a snapshot initializer restores the snapshot. */
  char request[1024];
  snprintf(request, sizeof(request),
           "{\"id\":\"ws3\",\"metadata\":{\"owner\":\"u1\",\"meta_id\":\"m3\"},"
           "\"initializer\":{\"snapshot\":{\"snapshot\":\"%s\"}}}",
           snapshot);
  wsd_string_free(snapshot);
  CHECK_STATUS(wsd_call_json(d, method("InitWorkspace"), request, &json), WSD_OK);
  wsd_string_free(json);
  snprintf(path, sizeof(path), "%s/area/ws3/hello.txt", dir);
  CHECK(strcmp(read_file(path), "hello from C\n") == 0);

  /* Async: a call that completes. */
  outcome done;
  outcome_init(&done);
  wsd_pending *pending = NULL;
  CHECK_STATUS(wsd_call_async(d, method("IsWorkspaceExists"), exists_req.data, exists_req.len, on_done, &done, &pending), WSD_OK);
  outcome_wait(&done, 1);
  CHECK(done.status == WSD_OK && done.response_len == 2 && done.reason[0] == 0);
  CHECK_STATUS(wsd_pending_cancel(pending), WSD_OK); /* after completion: no effect */
  wsd_pending_free(pending);

  /* Streams: WatchProgress of ws2 answers the report of its init (done), then ends. The request
   * is a ProgressRequest whose id (field 1) is spelled as in IsWorkspaceExistsRequest. */
  const char *watch = "/wsdaemon.WorkspaceContentExt/WatchProgress";
  wsd_stream *stream = NULL;
  CHECK_STATUS(wsd_stream_open(d, method("IsWorkspaceExists"), exists_req.data, exists_req.len, &stream),
               WSD_INVALID_ARGUMENT); /* a unary method is called, not streamed */
  CHECK(stream == NULL);
  CHECK_STATUS(wsd_stream_open(d, watch, exists_req.data, exists_req.len, &stream), WSD_OK);
  CHECK_STATUS(wsd_stream_next(d, stream, &response, &response_len), WSD_OK);
  CHECK(contains(response, response_len, "\x12\x04init", 6)); /* operation = "init" */
  wsd_bytes_free(response, response_len);
  CHECK_STATUS(wsd_stream_next(d, stream, &response, &response_len), WSD_STREAM_END);
  CHECK_STATUS(wsd_stream_next(d, stream, &response, &response_len), WSD_STREAM_END);
  wsd_stream_free(stream);
  outcome streamed;
  outcome_init(&streamed);
  CHECK_STATUS(wsd_stream_open(d, watch, exists_req.data, exists_req.len, &stream), WSD_OK);
  CHECK_STATUS(wsd_stream_next_async(d, stream, on_done, &streamed, NULL), WSD_OK);
  outcome_wait(&streamed, 1);
  CHECK(streamed.status == WSD_OK && contains(streamed.response, streamed.response_len, "\x12\x04init", 6));
  CHECK_STATUS(wsd_stream_next_async(d, stream, on_done, &streamed, NULL), WSD_OK);
  outcome_wait(&streamed, 2);
  CHECK(streamed.status == WSD_STREAM_END && strcmp(streamed.reason, "stream_end") == 0);
  wsd_stream_free(stream);
  outcome_destroy(&streamed);
  /* An unknown workspace: the first read answers NOT_FOUND and ends the stream. */
  pb unknown = {0};
  pb_string(&unknown, 1, "nope");
  CHECK_STATUS(wsd_stream_open(d, watch, unknown.data, unknown.len, &stream), WSD_OK);
  CHECK_STATUS(wsd_stream_next(d, stream, &response, &response_len), WSD_NOT_FOUND);
  CHECK_STATUS(wsd_stream_next(d, stream, &response, &response_len), WSD_STREAM_END);
  wsd_stream_free(stream);
  wsd_stream_free(NULL);

  /* Async: a wait that is cancelled. The init hangs on a server that never answers. */
  int silent = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(silent >= 0);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t addr_len = sizeof(addr);
  CHECK(bind(silent, (struct sockaddr *)&addr, sizeof(addr)) == 0);
  CHECK(listen(silent, 4) == 0);
  CHECK(getsockname(silent, (struct sockaddr *)&addr, &addr_len) == 0);
  /* The init itself, asynchronously: its callback must still run once when the daemon closes. */
  pb hang_init = {0};
  outcome init_done;
  outcome_init(&init_done);
  {
    /* Build the protobuf request of the hanging init by hand: id, metadata, download initializer. */
    pb md = {0}, file = {0}, download = {0}, ini = {0};
    pb_string(&md, 1, "u1");
    pb_string(&md, 2, "m4");
    char url_buf[128];
    snprintf(url_buf, sizeof(url_buf), "http://127.0.0.1:%d/never", ntohs(addr.sin_port));
    pb_string(&file, 1, url_buf);
    pb_string(&file, 2, "f");
    pb_string(&file, 3, "sha256:0000000000000000000000000000000000000000000000000000000000000000");
    pb_message(&download, 1, &file);
    pb_message(&ini, 6, &download); /* WorkspaceInitializer.download = 6 */
    pb_string(&hang_init, 1, "ws-hang");
    pb_message(&hang_init, 2, &md);
    pb_message(&hang_init, 3, &ini);
  }
  CHECK_STATUS(wsd_call_async(d, method("InitWorkspace"), hang_init.data, hang_init.len, on_done, &init_done, NULL), WSD_OK);
  for (int i = 0; i < 100; i++) {
    CHECK_STATUS(wsd_is_workspace_exists(d, "ws-hang", &exists), WSD_OK);
    if (exists) break;
    usleep(20000);
  }
  CHECK(exists);
  outcome waited;
  outcome_init(&waited);
  pb wait_req = {0};
  pb_string(&wait_req, 1, "ws-hang");
  CHECK_STATUS(wsd_call_async(d, method("WaitForInit"), wait_req.data, wait_req.len, on_done, &waited, &pending), WSD_OK);
  usleep(200000);
  pthread_mutex_lock(&waited.lock);
  CHECK(waited.calls == 0);
  pthread_mutex_unlock(&waited.lock);
  CHECK_STATUS(wsd_pending_cancel(pending), WSD_OK);
  outcome_wait(&waited, 1);
  CHECK(waited.status == WSD_CANCELLED);
  CHECK(strcmp(waited.reason, "cancelled") == 0);
  wsd_pending_free(pending);

  CHECK_STATUS(wsd_daemon_close(d), WSD_OK);
  outcome_wait(&init_done, 1);
  CHECK(init_done.status == WSD_UNAVAILABLE);
  CHECK(strcmp(init_done.reason, "shutting_down") == 0);
  CHECK_STATUS(wsd_is_workspace_exists(d, "ws2", &exists), WSD_UNAVAILABLE);
  wsd_daemon_free(d);
  close(silent);
  usleep(100000);
  CHECK(done.calls == 1 && waited.calls == 1 && init_done.calls == 1);
  outcome_destroy(&done);
  outcome_destroy(&waited);
  outcome_destroy(&init_done);
  printf("roundtrip ok\n");
  return 0;
}
