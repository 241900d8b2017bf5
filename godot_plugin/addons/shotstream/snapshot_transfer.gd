@tool
class_name ShotStreamSnapshotTransfer
extends RefCounted
## Story snapshots and cue logs on the wire: splitting a snapshot into the parts a client sends,
## putting together the parts a server sends, and merging the pages of a cue log.
##
## A snapshot is opaque bytes (the story's state between shots: keep them unchanged with the game
## save, e.g. in a [ShotStreamSnapshot]). A client sends one as the [code]open[/code] message's
## first part, then [code]snapshot_part[/code] messages, each part at most
## [constant MAX_UPLOAD_PART_BYTES] (client messages are limited to 64 KiB and bytes travel as
## base64). A server sends one as [code]snapshot[/code] parts that an instance of this class puts
## together ([method add]): in order from index 0, one total size, never more than announced and
## never more than [member max_bytes] (so a peer cannot make it grow without bound).
## [ShotStreamClient] does all this; the functions are here for tests and for clients of your own.

## The largest part a client sends: 32 KiB of bytes is under 44 KiB of base64.
const MAX_UPLOAD_PART_BYTES := 32768
## The largest snapshot [method add] takes by default: 256 MiB (a full-size story's is under 40
## MiB; servers send at most 64 MiB by default).
const DEFAULT_MAX_BYTES := 268435456

## The largest snapshot this instance puts together; a larger announced total is refused.
var max_bytes := DEFAULT_MAX_BYTES
## Bytes of the snapshot in progress received so far.
var received_bytes: int:
	get:
		return _received

var _parts: Array[PackedByteArray] = []
var _total := 0
var _received := 0
var _next_index := 0
var _count := 0
var _in_progress := false


## True between a snapshot's first part and its last.
func in_progress() -> bool:
	return _in_progress


## Adds the next part a server sent (a decoded SnapshotPart):
## [code]{"data": PackedByteArray, "error": String}[/code]. [code]data[/code] is the whole snapshot
## once its last byte is in (else empty). A part that breaks a rule gives an [code]error[/code]
## and drops the snapshot in progress.
func add(part: Dictionary) -> Dictionary:
	var error := _add_checked(part)
	if not error.is_empty():
		reset()
		return {"data": PackedByteArray(), "error": error}
	if _received < _total:
		return {"data": PackedByteArray(), "error": ""}
	var whole := PackedByteArray()
	for piece in _parts:
		whole.append_array(piece)
	reset()
	return {"data": whole, "error": ""}


## Drops the snapshot in progress (a session ended, a new one opened).
func reset() -> void:
	_parts = []
	_total = 0
	_received = 0
	_next_index = 0
	_count = 0
	_in_progress = false


func _add_checked(part: Dictionary) -> String:
	var index: int = part.get("index", 0)
	var total: int = part.get("total_bytes", 0)
	var count: int = part.get("count", 0)
	var bytes: PackedByteArray = part.get("data", PackedByteArray())
	if index == 0:
		var first := _first_part_error(total)
		if not first.is_empty():
			return first
		_parts = []
		_total = total
		_received = 0
		_next_index = 0
		_count = count
		_in_progress = true
	elif not _in_progress:
		return "snapshot part %d came without its part 0" % index
	var error := _part_error(index, total, count, bytes.size())
	if not error.is_empty():
		return error
	_parts.append(bytes)
	_received += bytes.size()
	_next_index += 1
	var last := _count != 0 and index == _count - 1
	if _received == _total and _count != 0 and not last:
		return "the snapshot's %d bytes were in after part %d of %d" % [_received, index, _count]
	if _received < _total and last:
		return (
			"the snapshot's last part (%d) left it short: %d of %d bytes"
			% [index, _received, _total]
		)
	return ""


func _first_part_error(total: int) -> String:
	if _in_progress:
		return (
			"a new snapshot began (part 0) before the one in progress was complete (%d of %d bytes)"
			% [_received, _total]
		)
	if total == 0:
		return "a snapshot part announces a total of 0 bytes"
	if total < 0 or total > max_bytes:
		return (
			"the snapshot is %s bytes, more than this client takes (%d bytes, max_snapshot_bytes)"
			% [ShotStreamProtocol.u64_to_string(total), max_bytes]
		)
	return ""


func _part_error(index: int, total: int, count: int, size: int) -> String:
	if index != _next_index:
		return "snapshot part %d came where part %d was due" % [index, _next_index]
	if total != _total:
		return (
			"snapshot part %d announces %s bytes in all; part 0 announced %d"
			% [index, ShotStreamProtocol.u64_to_string(total), _total]
		)
	if count != _count:
		return "snapshot part %d says %d parts; part 0 said %d" % [index, count, _count]
	if _count != 0 and index >= _count:
		return "snapshot part %d of only %d" % [index, _count]
	if _received + size > _total:
		return "snapshot part %d goes past the %d bytes announced" % [index, _total]
	return ""


## The SnapshotPart of [param data] with [param index] (0-based) of [param part_bytes] bytes each:
## [code]{"data", "total_bytes", "index"}[/code] ([code]count[/code] left 0, as clients may).
## [param total_bytes] -1 = the size of [param data]; a part past the end has empty data.
static func part(
	data: PackedByteArray,
	index: int,
	total_bytes: int = -1,
	part_bytes: int = MAX_UPLOAD_PART_BYTES
) -> Dictionary:
	var start := index * part_bytes
	return {
		"data": data.slice(start, start + part_bytes) if start < data.size() else PackedByteArray(),
		"total_bytes": data.size() if total_bytes < 0 else total_bytes,
		"index": index,
	}


## How many parts of [param part_bytes] (1 .. [constant MAX_UPLOAD_PART_BYTES]) [param data]
## takes; 0 for an empty snapshot or a bad part size (neither can be sent).
static func part_count(data: PackedByteArray, part_bytes: int = MAX_UPLOAD_PART_BYTES) -> int:
	if data.is_empty() or part_bytes < 1 or part_bytes > MAX_UPLOAD_PART_BYTES:
		return 0
	return ceili(data.size() / float(part_bytes))


## The [code]snapshot_part[/code] messages that follow the open message for [param data]: every
## part after the first, as JSON text.
static func rest_messages(
	data: PackedByteArray, part_bytes: int = MAX_UPLOAD_PART_BYTES
) -> PackedStringArray:
	var out := PackedStringArray()
	for i in range(1, part_count(data, part_bytes)):
		out.append(ShotStreamProtocol.encode_client("snapshot_part", part(data, i, -1, part_bytes)))
	return out


## An [code]open[/code] message: [param fields] (OpenSession fields, proto names; the protocol
## version is added) plus [param first_part] (a SnapshotPart: continue a saved story) or
## [param fork] (a Fork: start from another open session's story); {} = not set.
static func open_message(
	fields: Dictionary, first_part: Dictionary, fork: Dictionary = {}
) -> String:
	var open := fields.duplicate()
	open["protocol_version"] = ShotStreamProtocol.PROTOCOL_VERSION
	if not first_part.is_empty():
		open["snapshot"] = first_part
	if not fork.is_empty():
		open["fork"] = fork
	return ShotStreamProtocol.encode_client("open", open)


## Merges a cue log page (a decoded CueLog) into [param log] (start with {}): the first page's
## caption, seed, decoder, first shot and dropped shots, every page's entries in order, next_shot
## 0. Returns [code]{"next_shot": int, "error": String}[/code]: the shot to ask for next
## (CueLogRequest.from_shot), or 0 once the log is complete. A page that does not move forward is
## an error.
static func merge_cue_log_page(log: Dictionary, page: Dictionary) -> Dictionary:
	if log.is_empty():
		log.merge(page, true)
		log["entries"] = []
		log["next_shot"] = 0
	var entries: Array = log["entries"]
	var last := -1 if entries.is_empty() else int(entries[-1]["shot_index"])
	for entry: Dictionary in page["entries"]:
		if last >= 0 and int(entry["shot_index"]) <= last:
			return {
				"next_shot": 0,
				"error":
				(
					"cue log entry for shot %d after shot %d: pages must move forward"
					% [entry["shot_index"], last]
				)
			}
		entries.append(entry)
		last = entry["shot_index"]
	var next: int = page["next_shot"]
	if next != 0 and (page["entries"].is_empty() or next <= last):
		return {
			"next_shot": 0,
			"error": "cue log page asks to go on from shot %d, which it does not move past" % next
		}
	return {"next_shot": next, "error": ""}
