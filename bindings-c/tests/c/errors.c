/* Error paths of the C ABI: NULL arguments, bad UTF-8, unknown methods, bad request bytes and
 * JSON, bad configuration, invalid ids, use after close. Usage: errors <scratch folder> */
#include "common.h"

static void on_done(void *user_data, wsd_status status, const uint8_t *response, size_t len,
                    const char *message, const char *reason) {
  (void)status; (void)response; (void)len; (void)message; (void)reason;
  if (user_data) (*(int *)user_data)++;
}

int main(int argc, char **argv) {
  CHECK(argc == 2);
  const char *dir = argv[1];
  CHECK(strcmp(wsd_status_str(WSD_OK), "OK") == 0);
  CHECK(strcmp(wsd_status_str(WSD_DATA_LOSS), "DATA_LOSS") == 0);
  CHECK(strcmp(wsd_status_str(WSD_NULL_ARGUMENT), "NULL_ARGUMENT") == 0);
  CHECK(strcmp(wsd_status_str(12345), "UNKNOWN_STATUS") == 0);

  wsd_daemon *d = NULL;
  CHECK_STATUS(wsd_daemon_new("", NULL), WSD_NULL_ARGUMENT);
  CHECK(wsd_last_error_message() != NULL);
  CHECK(strcmp(wsd_last_error_reason(), "null_argument") == 0);
  CHECK_STATUS(wsd_daemon_new("this is = = not toml", &d), WSD_INVALID_ARGUMENT);
  CHECK(d == NULL); /* out-parameters are written only on success */
  CHECK_STATUS(wsd_daemon_new("{\"no_such_key\": 1}", &d), WSD_INVALID_ARGUMENT);
  CHECK(strstr(wsd_last_error_message(), "no_such_key") != NULL);
  CHECK_STATUS(wsd_daemon_new("\xff\xfe", &d), WSD_INVALID_UTF8);

  char config[1024];
  snprintf(config, sizeof(config),
           "{\"working_area\": \"%s/area\", \"storage\": {\"local_path\": \"%s/storage\"}}", dir, dir);
  CHECK_STATUS(wsd_daemon_new(config, &d), WSD_OK);

  bool exists = true;
  CHECK_STATUS(wsd_is_workspace_exists(NULL, "ws", &exists), WSD_NULL_ARGUMENT);
  CHECK_STATUS(wsd_is_workspace_exists(d, NULL, &exists), WSD_NULL_ARGUMENT);
  CHECK_STATUS(wsd_is_workspace_exists(d, "ws", NULL), WSD_NULL_ARGUMENT);
  CHECK_STATUS(wsd_is_workspace_exists(d, "bad\xc3\x28", &exists), WSD_INVALID_UTF8);
  CHECK(strcmp(wsd_last_error_reason(), "invalid_utf8") == 0);
  CHECK_STATUS(wsd_is_workspace_exists(d, "../x", &exists), WSD_INVALID_ARGUMENT);
  CHECK(exists == true); /* untouched on failure */
  CHECK(strstr(wsd_last_error_message(), "invalid workspace id") != NULL);
  CHECK(strcmp(wsd_last_error_reason(), "invalid_id") == 0);
  CHECK_STATUS(wsd_is_workspace_exists(d, "ws", &exists), WSD_OK);
  CHECK(wsd_last_error_message() == NULL);
  CHECK(wsd_last_error_reason() == NULL);
  CHECK(exists == false);

  CHECK_STATUS(wsd_wait_for_init(d, "nope"), WSD_NOT_FOUND);
  CHECK(strcmp(wsd_last_error_reason(), "workspace_not_found") == 0);
  CHECK_STATUS(wsd_wait_for_init(d, NULL), WSD_NULL_ARGUMENT);
  char *url = (char *)"untouched";
  CHECK_STATUS(wsd_backup_workspace(d, "nope", &url), WSD_NOT_FOUND);
  CHECK(strcmp(url, "untouched") == 0);
  CHECK_STATUS(wsd_backup_workspace(d, "nope", NULL), WSD_NULL_ARGUMENT);
  CHECK_STATUS(wsd_take_snapshot(d, "", false, &url), WSD_INVALID_ARGUMENT);
  CHECK_STATUS(wsd_dispose_workspace(d, "nope", false, false, NULL), WSD_NOT_FOUND);

  uint8_t *response = NULL;
  size_t response_len = 0;
  const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff};
  CHECK_STATUS(wsd_call(d, "/wsdaemon.WorkspaceContentService/IsWorkspaceExists", garbage, sizeof(garbage), &response, &response_len), WSD_INVALID_ARGUMENT);
  CHECK_STATUS(wsd_call(d, "/wsdaemon.WorkspaceContentService/NoSuchMethod", NULL, 0, &response, &response_len), WSD_UNIMPLEMENTED);
  CHECK(strcmp(wsd_last_error_reason(), "unknown_method") == 0);
  CHECK_STATUS(wsd_call(d, "not even a path", NULL, 0, &response, &response_len), WSD_UNIMPLEMENTED);
  CHECK_STATUS(wsd_call(d, "/wsdaemon.WorkspaceContentService/IsWorkspaceExists", NULL, 3, &response, &response_len), WSD_NULL_ARGUMENT);
  CHECK_STATUS(wsd_call(d, NULL, NULL, 0, &response, &response_len), WSD_NULL_ARGUMENT);
  CHECK_STATUS(wsd_call(d, "/wsdaemon.WorkspaceContentService/IsWorkspaceExists", NULL, 0, NULL, &response_len), WSD_NULL_ARGUMENT);
  CHECK(response == NULL);
  /* An empty request is a valid message with defaults: an empty id is refused by the operation. */
  CHECK_STATUS(wsd_call(d, "/wsdaemon.WorkspaceContentService/IsWorkspaceExists", NULL, 0, &response, &response_len), WSD_INVALID_ARGUMENT);

  char *json = NULL;
  CHECK_STATUS(wsd_call_json(d, "/wsdaemon.WorkspaceContentService/IsWorkspaceExists", "{\"id\": 42}", &json), WSD_INVALID_ARGUMENT);
  CHECK_STATUS(wsd_call_json(d, "/wsdaemon.WorkspaceContentService/IsWorkspaceExists", "{", &json), WSD_INVALID_ARGUMENT);
  CHECK_STATUS(wsd_call_json(d, "/wsdaemon.WorkspaceContentService/InitWorkspace", "{\"id\":\"ws\"}", &json), WSD_INVALID_ARGUMENT);
  CHECK(strstr(wsd_last_error_message(), "metadata") != NULL);
  CHECK_STATUS(wsd_call_json(d, "/wsdaemon.WorkspaceContentService/InitWorkspace",
                             "{\"id\":\"ws\",\"metadata\":{\"owner\":\"u\",\"metaId\":\"m\"},\"initializer\":{\"backup\":{}}}", &json),
               WSD_FAILED_PRECONDITION);
  CHECK(json == NULL);

  CHECK_STATUS(wsd_call_async(d, "/wsdaemon.WorkspaceContentService/IsWorkspaceExists", NULL, 0, NULL, NULL, NULL), WSD_NULL_ARGUMENT);
  CHECK_STATUS(wsd_call_async(NULL, "/x/y", NULL, 0, on_done, NULL, NULL), WSD_NULL_ARGUMENT);
  CHECK_STATUS(wsd_pending_cancel(NULL), WSD_NULL_ARGUMENT);

  /* Free functions accept NULL. */
  wsd_bytes_free(NULL, 0);
  wsd_string_free(NULL);
  wsd_pending_free(NULL);
  wsd_daemon_free(NULL);

  CHECK_STATUS(wsd_daemon_close(d), WSD_OK);
  CHECK_STATUS(wsd_daemon_close(d), WSD_OK);
  CHECK_STATUS(wsd_is_workspace_exists(d, "ws", &exists), WSD_UNAVAILABLE);
  CHECK(strcmp(wsd_last_error_reason(), "shutting_down") == 0);
  CHECK_STATUS(wsd_call(d, "/wsdaemon.WorkspaceContentService/IsWorkspaceExists", NULL, 0, &response, &response_len), WSD_UNAVAILABLE);
  /* A refused async call hands out no pending handle and never runs its callback. */
  int callbacks = 0;
  wsd_pending *pending = (wsd_pending *)&callbacks;
  CHECK_STATUS(wsd_call_async(d, "/wsdaemon.WorkspaceContentService/IsWorkspaceExists", NULL, 0, on_done, &callbacks, &pending), WSD_UNAVAILABLE);
  CHECK(pending == NULL);
  CHECK(callbacks == 0);
  wsd_daemon_free(d);
  printf("errors ok\n");
  return 0;
}
