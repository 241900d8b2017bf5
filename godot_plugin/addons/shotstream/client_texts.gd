@tool
extends RefCounted
## What a [ShotStreamClient] reports (the Output panel and its error signal), and why it refuses a
## cue: the long texts, kept out of the connection code. Internal.


static func bad_url(url: String, default_url: String) -> String:
	return (
		(
			'ShotStreamClient: bad server URL "%s": expected ws://HOST:PORT/v1/direct'
			+ " (`shotstream serve` listens on %s by default)"
		)
		% [url, default_url]
	)


static func wrong_transport(transport: int) -> String:
	return (
		(
			"ShotStreamClient: the server opened the session with transport %s; this addon"
			+ " asks for and reads only TRANSPORT_INLINE frames"
		)
		% ShotStreamProtocol.enum_name("Transport", transport)
	)


## [param sizes]: [have, credits, frames, width, height, need].
static func small_inbound_buffer(sizes: Array) -> String:
	return (
		(
			"ShotStreamClient: the inbound buffer (%d bytes) cannot hold this session's %d"
			+ " chunks in flight of up to %d frames of %dx%d (%d bytes): chunks that do not"
			+ " fit are dropped. Raise inbound_buffer_bytes (0 = automatic) or lower"
			+ " max_chunks_in_flight."
		)
		% sizes
	)


static func unplayable_chunk(chunk: Dictionary, pixel_bytes: int) -> String:
	return (
		(
			"ShotStreamClient: chunk %s carries %d pixel bytes for %d frames of %dx%d: not"
			+ " playable, skipped (and acked)"
		)
		% [
			ShotStreamProtocol.u64_to_string(chunk["chunk_seq"]),
			pixel_bytes,
			chunk["num_frames"],
			chunk["width"],
			chunk["height"]
		]
	)


static func missing_chunks(first: int, last: int) -> String:
	return (
		(
			"ShotStreamClient: chunks %d to %d never arrived (dropped: on web builds a"
			+ " message that does not fit inbound_buffer_bytes is dropped; raise it or lower"
			+ " max_chunks_in_flight); acked them so the session goes on"
		)
		% [first, last]
	)


static func close_timeout(url: String, seconds: float) -> String:
	return (
		(
			"ShotStreamClient: %s did not finish closing the connection within %.1f s;"
			+ " dropped it"
		)
		% [url, seconds]
	)


static func unreachable(url: String, detail: String) -> String:
	return (
		(
			"ShotStreamClient: could not open a session at %s (%s). Is `shotstream serve`"
			+ " running there, and are the host, the gateway port (default 50052), the path"
			+ " /v1/direct and the token right? (A wrong token or path is refused at the"
			+ " handshake, which looks the same as an unreachable server.)"
		)
		% [url, detail]
	)


static func too_big(what: String, size: int, most: int) -> String:
	return (
		(
			"ShotStreamClient.%s: the message is %d bytes; the gateway accepts at most %d"
			+ " (it would close the connection): shorten it"
		)
		% [what, size, most]
	)


## Why a cue cannot be sent or queued ("" when it can): [param most] is the session's chunks per
## shot (0: unknown), [param full_queue] the queue's limit when no more cues can wait for a
## session (else 0).
static func cue_refusal(
	prompt: String, num_chunks: int, mode: String, at_chunk: int, most: int, full_queue: int
) -> String:
	var problems := {
		'mode must be "wait" or "cut", got "%s"' % mode: mode.to_lower() not in ["wait", "cut"],
		"at_chunk must be 0, or > 0 for a cut (a wait cue starts when the shot ends)":
		at_chunk < 0 or (at_chunk > 0 and mode.to_lower() != "cut"),
		"the prompt is empty: describe the shot": prompt.strip_edges().is_empty(),
		"num_chunks must be >= 0 (0 = full shot)": num_chunks < 0,
		"num_chunks %d is more than this session's %d chunks per shot" % [num_chunks, most]:
		most > 0 and num_chunks > most,
		"at_chunk %d is more than this session's %d chunks per shot" % [at_chunk, most]:
		most > 0 and at_chunk > most,
		"%d cues are already waiting for a session; dropped this one" % full_queue: full_queue > 0,
	}
	for text: String in problems:
		if problems[text]:
			return text
	return ""


## What [method ShotStreamClient.resume_story] does after a session ended ([param from_snapshot]:
## continues the snapshot whose story goes on at shot [param next_shot]).
static func resuming(from_snapshot: bool, next_shot: int) -> String:
	if from_snapshot:
		return (
			"Resuming the story in a new session from the snapshot of the last shot boundary"
			+ " (shot %d on; the shot in progress plays again from its start)." % next_shot
		)
	return (
		"No snapshot of the story yet: opening a new story (same caption and seed) and cueing"
		+ " the shot in progress and the queued cues again."
	)


static func other_protocol(version: int) -> String:
	return (
		"ShotStreamClient: the server speaks protocol %d, this addon %d: update one of them"
		% [version, ShotStreamProtocol.PROTOCOL_VERSION]
	)
