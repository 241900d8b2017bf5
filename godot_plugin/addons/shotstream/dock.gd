@tool
extends VBoxContainer
## The editor dock (added by the plugin): connect to a server, write prompts, watch the stream,
## read latency and GPU stats, save takes.
##
## Built in code from plain Controls with its own [ShotStreamClient] and [ShotStreamPlayer]
## children, so it also runs outside the editor (the tests drive it in a game build). Nothing here
## touches the editor API; [code]plugin.gd[/code] only adds it as a dock. Moving the dock (which
## takes it out of the tree and back) keeps the session; the session ends when the dock is freed
## (the plugin is disabled or the editor quits).[br][br]
## No [code]class_name[/code]: it is the plugin's, not a node for scenes (so it stays out of the
## Create New Node dialog); [code]plugin.gd[/code] preloads it, passes the editor's scale
## ([method set_ui_scale]) and keeps its fields in the project's editor metadata
## ([method settings], [method apply_settings], [signal settings_changed]).

## The server, caption, seed or decoder field changed (the plugin saves [method settings]).
signal settings_changed

## The fields [method settings] returns and [method apply_settings] takes (not the token: a secret
## stays out of files).
const SETTING_KEYS: Array[String] = ["url", "caption", "seed", "decoder"]

## Server URL field.
var url_edit: LineEdit
## Token field (hidden text).
var token_edit: LineEdit
## Global caption field.
var caption_edit: LineEdit
## Seed field (a uint64 in decimal, 0 to 18446744073709551615).
var seed_edit: LineEdit
## Decoder choice (item ids are [enum ShotStreamProtocol.Decoder] values; UNSPECIFIED = the
## server's default).
var decoder_option: OptionButton
## Connect / Disconnect button.
var connect_button: Button
## Connection status line.
var status_label: Label
## Shot prompt.
var prompt_edit: TextEdit
## Chunks of the next shot (0 = full shot; at most the session's max_chunks_per_shot).
var chunks_spin: SpinBox
## Queues the prompt after the current shot.
var cue_button: Button
## Cuts to the prompt now.
var cut_button: Button
## The stream.
var preview: TextureRect
## Per-chunk latency and server timing.
var latency_label: Label
## Session and GPU statistics.
var stats_label: Label
## Take name ("" = chosen by the server).
var take_edit: LineEdit
## Starts recording a take.
var take_start_button: Button
## Stops recording and saves the take.
var take_stop_button: Button
## On: the next take is FULL quality (re-decoded with the Wan VAE after it stops).
var take_full_check: CheckBox
## The last take's state / saved path.
var take_label: Label
## Last error.
var error_label: Label
## The dock's session.
var client: ShotStreamClient
## The dock's preview player.
var player: ShotStreamPlayer

var _last_latency_ms := -1.0
var _ui_scale := 1.0
var _sized: Array[Control] = []  # controls whose custom_minimum_size is scaled
var _base_sizes: Array[Vector2] = []


func _init() -> void:
	name = "ShotStream"
	_min_size(self, Vector2(260, 0))
	client = ShotStreamClient.new()
	client.name = "Client"
	client.connect_on_ready = false
	client.auto_reconnect = false
	client.client_name = "godot/editor"
	player = ShotStreamPlayer.new()
	player.name = "Player"
	client.player = player
	add_child(client)
	add_child(player)
	_build()
	client.state_changed.connect(_on_state_changed)
	client.connected.connect(_on_connected)
	client.disconnected.connect(_on_disconnected)
	client.chunk_received.connect(_on_chunk)
	client.cue_latency.connect(_on_cue_latency)
	client.stats_received.connect(_on_stats)
	client.error_received.connect(_on_error)
	client.take_started.connect(_on_take_started)
	client.take_saved.connect(_on_take_saved)
	_on_state_changed(client.state)
	for edit: LineEdit in [url_edit, caption_edit, seed_edit]:
		edit.text_changed.connect(func(_t: String) -> void: settings_changed.emit())
	decoder_option.item_selected.connect(func(_i: int) -> void: settings_changed.emit())


## Scales the dock's fixed sizes by [param factor] (the editor's display scale,
## which plugin.gd reads from the editor); fonts and themed sizes follow the editor
## theme by themselves.
func set_ui_scale(factor: float) -> void:
	_ui_scale = maxf(factor, 0.1)
	for i in _sized.size():
		_sized[i].custom_minimum_size = _base_sizes[i] * _ui_scale


## The scale [method set_ui_scale] set (1 by default).
func get_ui_scale() -> float:
	return _ui_scale


## The fields worth remembering between editor sessions: [code]{"url", "caption", "seed",
## "decoder"}[/code] (not the token).
func settings() -> Dictionary:
	return {
		"url": url_edit.text,
		"caption": caption_edit.text,
		"seed": seed_edit.text,
		"decoder": decoder_option.get_selected_id(),
	}


## Fills the fields from [param values] (as [method settings] returns them; missing keys and
## values of the wrong type are left as they are).
func apply_settings(values: Dictionary) -> void:
	if values.get("url") is String and not String(values["url"]).is_empty():
		url_edit.text = values["url"]
	if values.get("caption") is String:
		caption_edit.text = values["caption"]
	if values.get("seed") is String:
		seed_edit.text = values["seed"]
	if values.get("decoder") is int:
		var index := decoder_option.get_item_index(values["decoder"])
		if index >= 0:
			decoder_option.select(index)


## Connects with the fields' settings, or closes the open session.
func toggle_connection() -> void:
	if client.state != ShotStreamClient.State.DISCONNECTED:
		client.close()
		return
	var parsed_seed := ShotStreamProtocol.parse_u64(seed_edit.text.strip_edges())
	if parsed_seed["error"] != "":
		error_label.text = "Seed: " + String(parsed_seed["error"])
		return
	client.server_url = url_edit.text.strip_edges()
	client.token = token_edit.text.strip_edges()
	client.global_caption = caption_edit.text
	client.story_seed = parsed_seed["value"]
	client.decoder = decoder_option.get_selected_id() as ShotStreamProtocol.Decoder
	error_label.text = ""
	client.open_session()


## Sends the prompt box as a cue ([param cut]: cut to it now). Returns the event id or "".
func send_prompt(cut: bool = false) -> String:
	var prompt := prompt_edit.text.strip_edges()
	if prompt.is_empty():
		error_label.text = "Write a prompt first."
		return ""
	return client.cue(prompt, "", int(chunks_spin.value), "cut" if cut else "wait")


## Starts a take named by the take field (FULL quality when the Full box is checked).
func start_take() -> void:
	client.start_take(
		take_edit.text.strip_edges(),
		(
			ShotStreamProtocol.TakeQuality.FULL
			if take_full_check.button_pressed
			else ShotStreamProtocol.TakeQuality.LIVE
		)
	)


## Stops the take (the saved path appears under the buttons).
func stop_take() -> void:
	client.stop_take()


func _build() -> void:
	url_edit = _line("Server", ShotStreamClient.DEFAULT_URL, "ws://HOST:PORT/v1/direct")
	token_edit = _line("Token", "", "none")
	token_edit.secret = true
	caption_edit = _line("Caption", "", "global caption of the story")
	seed_edit = _line("Seed", "0", "0 to 18446744073709551615")
	decoder_option = OptionButton.new()
	decoder_option.add_item("Server default", ShotStreamProtocol.Decoder.UNSPECIFIED)
	decoder_option.add_item("Wan VAE (exact)", ShotStreamProtocol.Decoder.WAN)
	decoder_option.add_item("TAE (fast preview)", ShotStreamProtocol.Decoder.TAE)
	_row("Decoder", decoder_option)
	connect_button = Button.new()
	connect_button.pressed.connect(toggle_connection)
	add_child(connect_button)
	status_label = Label.new()
	status_label.autowrap_mode = TextServer.AUTOWRAP_WORD_SMART
	add_child(status_label)
	add_child(HSeparator.new())
	prompt_edit = TextEdit.new()
	prompt_edit.placeholder_text = "Shot prompt, e.g. A dragon lands on the castle wall."
	_min_size(prompt_edit, Vector2(0, 64))
	prompt_edit.wrap_mode = TextEdit.LINE_WRAPPING_BOUNDARY
	add_child(prompt_edit)
	chunks_spin = SpinBox.new()
	chunks_spin.min_value = 0
	chunks_spin.max_value = 7  # the 1.3B model's; each session sets its own
	chunks_spin.value = 2
	chunks_spin.tooltip_text = "Chunks of the shot (0 = full shot)"
	var buttons := HBoxContainer.new()
	buttons.add_child(chunks_spin)
	cue_button = Button.new()
	cue_button.text = "Cue"
	cue_button.tooltip_text = "Play after the current shot"
	cue_button.pressed.connect(func() -> void: send_prompt(false))
	buttons.add_child(cue_button)
	cut_button = Button.new()
	cut_button.text = "Cut"
	cut_button.tooltip_text = "Cut to this shot now"
	cut_button.pressed.connect(func() -> void: send_prompt(true))
	buttons.add_child(cut_button)
	add_child(buttons)
	preview = TextureRect.new()
	_min_size(preview, Vector2(240, 135))
	preview.expand_mode = TextureRect.EXPAND_IGNORE_SIZE
	preview.stretch_mode = TextureRect.STRETCH_KEEP_ASPECT_CENTERED
	preview.size_flags_vertical = Control.SIZE_EXPAND_FILL
	add_child(preview)
	player.target = preview
	player.target_property = "texture"
	latency_label = Label.new()
	latency_label.autowrap_mode = TextServer.AUTOWRAP_WORD_SMART
	add_child(latency_label)
	stats_label = Label.new()
	stats_label.autowrap_mode = TextServer.AUTOWRAP_WORD_SMART
	add_child(stats_label)
	add_child(HSeparator.new())
	take_edit = LineEdit.new()
	take_edit.placeholder_text = "take name (optional)"
	add_child(take_edit)
	var take_buttons := HBoxContainer.new()
	take_start_button = Button.new()
	take_start_button.text = "Start take"
	take_start_button.pressed.connect(start_take)
	take_buttons.add_child(take_start_button)
	take_stop_button = Button.new()
	take_stop_button.text = "Stop take"
	take_stop_button.pressed.connect(stop_take)
	take_buttons.add_child(take_stop_button)
	take_full_check = CheckBox.new()
	take_full_check.text = "Full"
	take_full_check.tooltip_text = "Also re-decode the take with the Wan VAE after it stops"
	take_buttons.add_child(take_full_check)
	add_child(take_buttons)
	take_label = Label.new()
	take_label.autowrap_mode = TextServer.AUTOWRAP_WORD_SMART
	add_child(take_label)
	error_label = Label.new()
	error_label.autowrap_mode = TextServer.AUTOWRAP_WORD_SMART
	error_label.add_theme_color_override("font_color", Color(1.0, 0.45, 0.4))
	add_child(error_label)


func _min_size(control: Control, base: Vector2) -> void:
	_sized.append(control)
	_base_sizes.append(base)
	control.custom_minimum_size = base * _ui_scale


func _line(label: String, value: String, placeholder: String) -> LineEdit:
	var edit := LineEdit.new()
	edit.text = value
	edit.placeholder_text = placeholder
	edit.size_flags_horizontal = Control.SIZE_EXPAND_FILL
	_row(label, edit)
	return edit


func _row(label: String, control: Control) -> void:
	var row := HBoxContainer.new()
	var l := Label.new()
	l.text = label
	_min_size(l, Vector2(60, 0))
	row.add_child(l)
	control.size_flags_horizontal = Control.SIZE_EXPAND_FILL
	row.add_child(control)
	add_child(row)


func _on_state_changed(_state: int) -> void:
	var s := client.state
	var open := s == ShotStreamClient.State.OPEN
	connect_button.text = "Connect" if s == ShotStreamClient.State.DISCONNECTED else "Disconnect"
	for b: Button in [cue_button, cut_button, take_start_button, take_stop_button]:
		b.disabled = not open
	status_label.text = str(ShotStreamClient.State.keys()[s]).capitalize()
	if open:
		var o := client.session
		status_label.text = (
			"Open: %s, %dx%d @ %d fps, model %s%s%s"
			% [
				o["session_id"],
				o["width"],
				o["height"],
				o["fps"],
				o["model"],
				" (random weights)" if o["random_weights"] else "",
				(
					", decoder " + ShotStreamProtocol.enum_name("Decoder", o["decoder"])
					if o["decoder"] != ShotStreamProtocol.Decoder.UNSPECIFIED
					else ""
				)
			]
		)


func _on_connected(session: Dictionary) -> void:
	if session["max_chunks_per_shot"] > 0:
		chunks_spin.max_value = session["max_chunks_per_shot"]
	_on_state_changed(client.state)


func _on_disconnected(reason: String) -> void:
	status_label.text = "Disconnected (%s)" % reason


func _on_cue_latency(event_id: String, latency_ms: float) -> void:
	_last_latency_ms = latency_ms
	latency_label.text = "cue %s -> first frame: %.0f ms" % [event_id, latency_ms]


func _on_chunk(chunk: Dictionary) -> void:
	var line := (
		"chunk %s (%s, shot %d chunk %d, %d frames)"
		% [
			ShotStreamProtocol.u64_to_string(chunk["chunk_seq"]),
			chunk["event_id"],
			chunk["shot_index"],
			chunk["chunk_index"],
			chunk["num_frames"]
		]
	)
	var t: Variant = chunk["timing"]
	if t != null:
		line += (
			"\ndenoise %.0f ms, decode %.0f ms, commit %.0f ms, queue %.0f ms"
			% [t["denoise_ms"], t["decode_ms"], t["commit_ms"], t["queue_ms"]]
		)
	if _last_latency_ms >= 0.0:
		line += "\ncue -> first frame: %.0f ms" % _last_latency_ms
	latency_label.text = line


func _on_stats(stats: Dictionary) -> void:
	stats_label.text = (
		(
			"GPU: %.1f frames/s, %.0f ms/chunk, %.0f MiB in use\n"
			+ "%s chunks, %s frames, %d queued, %d sessions%s"
		)
		% [
			stats["fps"],
			stats["chunk_ms_mean"],
			stats["gpu_memory_used_bytes"] / 1048576.0,
			ShotStreamProtocol.u64_to_string(stats["chunks_sent"]),
			ShotStreamProtocol.u64_to_string(stats["frames_sent"]),
			stats["queued_cues"],
			stats["sessions"],
			", paused" if stats["paused"] else ""
		]
	)


func _on_error(code: int, message: String, _fatal: bool) -> void:
	error_label.text = (
		("%s: %s" % [ShotStreamProtocol.status_name(code), message]) if code != 0 else message
	)


func _on_take_started(take_name: String, path: String) -> void:
	take_label.text = "Recording %s -> %s" % [take_name, path]
	var full_path: String = client.take.get("full_path", "")
	if not full_path.is_empty():
		take_label.text += "\nfull quality -> " + full_path


func _on_take_saved(take: Dictionary) -> void:
	take_label.text = (
		"Saved %s: %d frames, %.2f s, %.1f MB\n%s"
		% [take["name"], take["frames"], take["duration_s"], take["bytes"] / 1e6, take["path"]]
	)
	var full_path: String = take["full_path"]
	if not full_path.is_empty() and full_path != take["path"]:
		take_label.text += "\nfull quality: %.1f MB\n%s" % [take["full_bytes"] / 1e6, full_path]
