@tool
class_name ShotStreamSnapshot
extends Resource
## A story snapshot kept with a game save: the bytes [signal ShotStreamClient.snapshot_ready]
## delivered, unchanged, and the shot the story continues with.
##
## Save it with the rest of a save game ([method save_to]: a [code].tres[/code] or, smaller and
## faster for a full-size story's tens of MiB, a binary [code].res[/code]), or keep only the bytes
## in a plain file ([method save_file] / [method load_file]: the same bytes
## [code]shotstream story --from-snapshot FILE[/code] reads). Both write a temporary file first and
## then rename it over the old one, so a crash mid-save leaves the previous save whole. Continue the
## story with [method ShotStreamClient.connect_to_story].[br][br]
## [b]Only load saves you wrote[/b]: [method load_from] goes through [ResourceLoader], which
## creates whatever a resource file names (scripts included). [method load_file] reads plain bytes
## and is safe for files from elsewhere (the server checks a snapshot before it uses it).

## The snapshot's bytes (opaque: never change them).
@export var data := PackedByteArray()
## The shot the story continues with: the next cue becomes this shot.
@export var next_shot_index := 0
## When the snapshot was saved: UTC, "YYYY-MM-DDTHH:MM:SSZ" ("" until saved).
@export var saved_at := ""


## A snapshot of [param snapshot_data] that continues with shot [param next_shot].
static func of(snapshot_data: PackedByteArray, next_shot: int) -> ShotStreamSnapshot:
	var out := ShotStreamSnapshot.new()
	out.data = snapshot_data
	out.next_shot_index = next_shot
	return out


## Saves this resource to [param path] (under [code]user://[/code], ending in [code].tres[/code]
## or [code].res[/code]) through [ResourceSaver], written to a temporary file first and renamed
## over [param path]; sets [member saved_at]. Returns OK or the error (also pushed).
func save_to(path: String) -> Error:
	var bad := _path_problem(path, ["tres", "res"])
	if not bad.is_empty():
		return _fail(ERR_INVALID_PARAMETER, "cannot save to %s: %s" % [path, bad])
	if data.is_empty():
		return _fail(ERR_INVALID_DATA, "cannot save an empty snapshot to " + path)
	var err := DirAccess.make_dir_recursive_absolute(path.get_base_dir())
	if err != OK:
		return _fail(err, "could not make %s: %s" % [path.get_base_dir(), error_string(err)])
	saved_at = Time.get_datetime_string_from_system(true) + "Z"
	var tmp := path.get_basename() + ".tmp." + path.get_extension()
	err = ResourceSaver.save(self, tmp)
	if err != OK:
		return _fail(err, "could not write %s: %s" % [tmp, error_string(err)])
	return _replace(tmp, path)


## Loads a snapshot [method save_to] wrote; null (and an error pushed) when [param path] cannot
## be read or holds something else. Read from disk each time (not from the resource cache).
static func load_from(path: String) -> ShotStreamSnapshot:
	var bad := _path_problem(path, ["tres", "res"])
	if not bad.is_empty() or not ResourceLoader.exists(path):
		_fail(ERR_FILE_NOT_FOUND, "cannot load %s: %s" % [path, bad if bad else "no such file"])
		return null
	var res := ResourceLoader.load(path, "", ResourceLoader.CACHE_MODE_IGNORE)
	if not (res is ShotStreamSnapshot) or (res as ShotStreamSnapshot).data.is_empty():
		_fail(ERR_INVALID_DATA, "%s does not hold a ShotStreamSnapshot with data" % path)
		return null
	return res


## Writes [param snapshot_data] as they are to [param path] (under [code]user://[/code]; the
## folders are made): to [code]PATH.tmp[/code] first, then renamed over [param path]. Returns OK
## or the error (also pushed).
static func save_file(path: String, snapshot_data: PackedByteArray) -> Error:
	var bad := _path_problem(path, [])
	if not bad.is_empty():
		return _fail(ERR_INVALID_PARAMETER, "cannot save to %s: %s" % [path, bad])
	if snapshot_data.is_empty():
		return _fail(ERR_INVALID_DATA, "cannot save an empty snapshot to " + path)
	var err := DirAccess.make_dir_recursive_absolute(path.get_base_dir())
	if err != OK:
		return _fail(err, "could not make %s: %s" % [path.get_base_dir(), error_string(err)])
	var tmp := path + ".tmp"
	var file := FileAccess.open(tmp, FileAccess.WRITE)
	if file == null:
		err = FileAccess.get_open_error()
		return _fail(err, "could not write %s: %s" % [tmp, error_string(err)])
	file.store_buffer(snapshot_data)
	err = file.get_error()
	file.close()
	if err != OK:
		DirAccess.remove_absolute(tmp)
		return _fail(err, "could not write %s: %s" % [tmp, error_string(err)])
	return _replace(tmp, path)


## The bytes [method save_file] wrote to [param path] (under [code]user://[/code]); empty (and
## an error pushed) when it cannot be read, is empty or is larger than [param max_bytes].
static func load_file(
	path: String, max_bytes: int = ShotStreamSnapshotTransfer.DEFAULT_MAX_BYTES
) -> PackedByteArray:
	var bad := _path_problem(path, [])
	if not bad.is_empty():
		_fail(ERR_INVALID_PARAMETER, "cannot load %s: %s" % [path, bad])
		return PackedByteArray()
	var file := FileAccess.open(path, FileAccess.READ)
	if file == null:
		var err := FileAccess.get_open_error()
		_fail(err, "could not read %s: %s" % [path, error_string(err)])
		return PackedByteArray()
	var size := file.get_length()
	if size == 0 or size > max_bytes:
		_fail(ERR_INVALID_DATA, "%s has %d bytes: not a snapshot (1..%d)" % [path, size, max_bytes])
		return PackedByteArray()
	return file.get_buffer(size)


# "" when path is a file path under user:// (no "..") with one of the extensions (any when []).
static func _path_problem(path: String, extensions: Array) -> String:
	if not path.begins_with("user://") or path.get_file().is_empty():
		return "snapshots are kept under user:// (a file path such as user://saves/story.res)"
	if ".." in path.trim_prefix("user://").split("/"):
		return "the path must not go up (..)"
	if not extensions.is_empty() and path.get_extension().to_lower() not in extensions:
		return "use a .%s file" % " or .".join(PackedStringArray(extensions))
	return ""


static func _replace(tmp: String, path: String) -> Error:
	var err := DirAccess.rename_absolute(tmp, path)
	if err != OK:
		DirAccess.remove_absolute(tmp)
		return _fail(err, "could not rename %s to %s: %s" % [tmp, path, error_string(err)])
	return OK


static func _fail(err: Error, text: String) -> Error:
	push_error("ShotStreamSnapshot: " + text)
	return err
