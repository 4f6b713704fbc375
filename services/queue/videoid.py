"""YouTube video ids from whatever people paste: ids, watch / short / embed / live URLs."""

import re
from urllib.parse import parse_qs, urlsplit

from services.common.contracts.errors import ErrorCode, ServiceError

_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_HOSTS = {
    "youtube.com",
    "www.youtube.com",
    "m.youtube.com",
    "music.youtube.com",
    "gaming.youtube.com",
    "youtube-nocookie.com",
    "www.youtube-nocookie.com",
}
_SHORT_HOSTS = {"youtu.be", "www.youtu.be"}
_PATH_PREFIXES = ("embed", "shorts", "live", "v", "e")


def video_id_from(video_id: str | None = None, url: str | None = None) -> str:
    if video_id is not None:
        if _ID.fullmatch(video_id):
            return video_id
        raise ServiceError(ErrorCode.INVALID_VIDEO, "A video id is 11 letters, digits, - or _.")
    found = _from_url((url or "").strip())
    if found is None:
        raise ServiceError(ErrorCode.INVALID_VIDEO, "Not a YouTube video URL.")
    return found


def _from_url(url: str) -> str | None:
    if "://" not in url:
        url = "https://" + url  # people paste "youtu.be/..." without a scheme
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    host = (parts.hostname or "").lower()
    segments = [s for s in parts.path.split("/") if s]
    candidate: str | None = None
    if host in _SHORT_HOSTS:
        candidate = segments[0] if segments else None
    elif host in _HOSTS:
        if segments[:1] == ["watch"]:
            candidate = (parse_qs(parts.query).get("v") or [None])[0]
        elif len(segments) >= 2 and segments[0] in _PATH_PREFIXES:
            candidate = segments[1]
    if candidate and _ID.fullmatch(candidate):
        return candidate
    return None
