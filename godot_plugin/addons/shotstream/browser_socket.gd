extends RefCounted
## The browser's own WebSocket, for web builds: what [ShotStreamClient] uses there instead of a
## [WebSocketPeer] (see [member ShotStreamClient.browser_socket]). It has the few methods of
## WebSocketPeer that the client calls.[br][br]
## Why: a WebSocketPeer of a web build copies each message on the main thread into its ring
## buffer as the browser delivers it, and out of it again in get_packet(), which alone took 22 to
## 29 ms for a 19 MB chunk (a plain copy: 2 ms). Here a binary message stays in the browser as its
## ArrayBuffer:
## [method get_packet] converts only its SSC1 prefix and JSON header, and the player copies each
## frame's bytes out of it when it shows that frame ([method frame_bytes]).

const _JS := """
(function () {
	if (window.shotstreamSockets) return;
	window.shotstreamSockets = {
		open: function (url) {
			const s = {queue: [], closeCode: -1, closeReason: "", ws: null};
			try {
				s.ws = new WebSocket(url);
			} catch (e) {
				return null;
			}
			s.ws.binaryType = "arraybuffer";
			s.ws.onmessage = function (e) { s.queue.push(e.data); };
			s.ws.onclose = function (e) { s.closeCode = e.code; s.closeReason = e.reason; };
			return s;
		},
		state: function (s) { return s.ws.readyState; },
		count: function (s) { return s.queue.length; },
		binaryNext: function (s) { return s.queue.length > 0 && typeof s.queue[0] !== "string"; },
		next: function (s) {
			const m = s.queue.shift();
			if (typeof m === "string") return {text: m, buffer: null, size: 0, head: null};
			let n = 8;
			if (m.byteLength >= 8) n = 8 + new DataView(m).getUint32(4, true);
			n = Math.min(n, m.byteLength);
			return {text: null, buffer: m, size: m.byteLength, head: new Uint8Array(m, 0, n)};
		},
		view: function (buffer, offset, size) { return new Uint8Array(buffer, offset, size); },
		send: function (s, text) {
			if (s.ws.readyState !== 1) return false;
			s.ws.send(text);
			return true;
		},
		close: function (s, code, reason) {
			if (s.ws.readyState > 1) return;
			if (code < 0) s.ws.close(); else s.ws.close(code, reason);
		},
	};
})();
"""

static var _frames_api: JavaScriptObject

## Ignored (the browser buffers what arrives); it reads as the largest int, so the client's check of
## the inbound buffer never fires.
var inbound_buffer_size: int = 9223372036854775807:
	set(_value):
		pass
## Ignored, for WebSocketPeer's settings.
var outbound_buffer_size := 0
## Ignored.
var max_queued_packets := 0
## Ignored: a browser cannot set handshake headers.
var handshake_headers := PackedStringArray()
## The ArrayBuffer of the binary message [method get_packet] returned last (null after a text one).
var last_buffer: JavaScriptObject
## Its size in bytes.
var last_size := 0

var _api: JavaScriptObject
var _socket: JavaScriptObject
var _was_string := false


## True in a web build whose engine can copy from a browser buffer (Godot 4.4 and newer).
static func available() -> bool:
	return (
		OS.has_feature("web")
		and ClassDB.class_has_method("JavaScriptBridge", "js_buffer_to_packed_byte_array")
	)


## A new socket: one of these when [param browser] is on and [method available], else a
## [WebSocketPeer].
static func new_socket(browser: bool) -> RefCounted:
	if browser and available():
		return new()
	return WebSocketPeer.new()


## One frame's bytes, copied out of a message's ArrayBuffer [param buffer].
static func frame_bytes(buffer: JavaScriptObject, offset: int, size: int) -> PackedByteArray:
	if _frames_api == null:
		_frames_api = JavaScriptBridge.get_interface("shotstreamSockets")
	var view: JavaScriptObject = _frames_api.call("view", buffer, offset, size)
	return JavaScriptBridge.call("js_buffer_to_packed_byte_array", view)


func connect_to_url(url: String) -> Error:
	JavaScriptBridge.eval(_JS, true)
	_api = JavaScriptBridge.get_interface("shotstreamSockets")
	if _api == null:
		return ERR_UNAVAILABLE
	var socket: Variant = _api.call("open", url)
	if not socket is JavaScriptObject:
		return ERR_INVALID_PARAMETER
	_socket = socket
	return OK


func poll() -> void:
	pass  # the browser delivers messages by itself


## A [enum WebSocketPeer.State] (the browser's readyState has the same values).
func get_ready_state() -> int:
	if _socket == null:
		return WebSocketPeer.STATE_CLOSED
	return int(_api.call("state", _socket))


func get_available_packet_count() -> int:
	if _socket == null:
		return 0
	return int(_api.call("count", _socket))


## True when the next message is a binary one (a chunk).
func next_is_binary() -> bool:
	return _socket != null and bool(_api.call("binaryNext", _socket))


## The next message: a text message's UTF-8 bytes, or a binary message's first bytes (the SSC1
## prefix and JSON header; the whole message is [member last_buffer], [member last_size] bytes).
func get_packet() -> PackedByteArray:
	var m: JavaScriptObject = _api.call("next", _socket)
	var text: Variant = m.get("text")
	_was_string = text is String
	if _was_string:
		last_buffer = null
		last_size = 0
		return (text as String).to_utf8_buffer()
	last_buffer = m.get("buffer")
	last_size = int(m.get("size"))
	return JavaScriptBridge.call("js_buffer_to_packed_byte_array", m.get("head"))


func was_string_packet() -> bool:
	return _was_string


func send_text(text: String) -> Error:
	if _socket == null or not bool(_api.call("send", _socket, text)):
		return ERR_UNCONFIGURED
	return OK


## [param code] -1: close without a status code.
func close(code: int = 1000, reason: String = "") -> void:
	if _socket != null:
		_api.call("close", _socket, code, reason)


func get_close_code() -> int:
	return -1 if _socket == null else int(_socket.get("closeCode"))


func get_close_reason() -> String:
	return "" if _socket == null else str(_socket.get("closeReason"))
