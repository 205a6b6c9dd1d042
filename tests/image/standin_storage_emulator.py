"""gcp-storage-emulator answering a download of a missing object the way GCS does.

GCS's JSON API answers `GET /download/storage/v1/b/B/o/NAME?alt=media` for an object that does not exist
with 404 and the text "No such object: B/NAME", which google-cloud-storage puts in its NotFound error.
Airflow's GCS task handler reads the old log before appending and tells "no log yet" from a failed read by
that text (provider 22.x, `GCSRemoteLogIO.no_log_found`), so it refuses to write a first log when the body
is empty, as the emulator sends it. This launcher fills in GCS's text and runs the emulator unchanged
otherwise (same arguments as its `gcp-storage-emulator` command).
"""
import sys
from http import HTTPStatus

from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
    _download(request, response, storage, *args, **kwargs)
    if response.status == HTTPStatus.NOT_FOUND:
        text = "No such object: %s/%s" % (request.params["bucket_name"], request.params["object_id"])
        response.write_file(text.encode(), content_type="text/html; charset=UTF-8")


objects.download = download  # before the server module builds its routing table from it

from gcp_storage_emulator.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
