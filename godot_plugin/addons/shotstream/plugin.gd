@tool
extends EditorPlugin
## Adds the ShotStream dock to the editor, sized for the editor's display scale, with the server,
## caption, seed and decoder it had last time in this project (kept in the project's editor
## metadata, not in the project's files; the token is never stored). The nodes (ShotStreamClient,
## ShotStreamPlayer, ShotStreamDirector) and resources (ShotStreamShotMap, ShotStreamCue) need no
## registration: they are [code]class_name[/code] scripts and appear in the Create New Node /
## Resource dialogs. Editor-only: nothing outside the editor loads this script.

const DockScript := preload("res://addons/shotstream/dock.gd")
const METADATA_SECTION := "shotstream_dock"

var _dock: DockScript


func _enter_tree() -> void:
	_dock = DockScript.new()
	_dock.set_ui_scale(EditorInterface.get_editor_scale())
	var editor_settings := EditorInterface.get_editor_settings()
	var saved := {}
	for key: String in DockScript.SETTING_KEYS:
		saved[key] = editor_settings.get_project_metadata(METADATA_SECTION, key, null)
	_dock.apply_settings(saved)
	_dock.settings_changed.connect(_save_settings)
	add_control_to_dock(DOCK_SLOT_RIGHT_UL, _dock)


func _exit_tree() -> void:
	if _dock != null:
		_save_settings()
		remove_control_from_docks(_dock)
		_dock.queue_free()
		_dock = null


func _save_settings() -> void:
	var editor_settings := EditorInterface.get_editor_settings()
	var values: Dictionary = _dock.settings()
	for key: String in values:
		editor_settings.set_project_metadata(METADATA_SECTION, key, values[key])
