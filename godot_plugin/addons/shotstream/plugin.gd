@tool
extends EditorPlugin
## Adds the ShotStream dock to the editor. The nodes (ShotStreamClient, ShotStreamPlayer,
## ShotStreamDirector) and resources (ShotStreamShotMap, ShotStreamCue) need no registration: they
## are [code]class_name[/code] scripts and appear in the Create New Node / Resource dialogs.
## Editor-only: nothing outside the editor loads this script.

const DockScript := preload("res://addons/shotstream/dock.gd")

var _dock: Control


func _enter_tree() -> void:
	_dock = DockScript.new()
	add_control_to_dock(DOCK_SLOT_RIGHT_UL, _dock)


func _exit_tree() -> void:
	if _dock != null:
		remove_control_from_docks(_dock)
		_dock.queue_free()
		_dock = null
