// shotstream.v1 messages the Unity client uses, as proto3 JSON (what the WebSocket gateway speaks).
// Mirrors proto/shotstream/v1/shotstream.proto; tests/unity checks the field lists against it.
// Reading: camelCase or proto names, integers as numbers or strings, enums as names or numbers,
// null = default, unknown fields ignored (forward compatibility). Writing: camelCase, enum names,
// uint64 as strings, default values omitted (json_format.MessageToJson's output).
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace ShotStream.Core
{
    public enum FrameFormat { Unspecified = 0, Rgb8 = 1, Rgba8 = 2 }
    public enum Transport { Unspecified = 0, Inline = 1, SharedMemory = 2 }
    public enum CueMode { Unspecified = 0, Wait = 1, Cut = 2 }
    /// <summary>The proto's <c>Decoder</c> (named so it does not clash with System.Text.Decoder): what turns the
    /// model's latents into the frames a session sees. Unspecified = the server's default.</summary>
    public enum FrameDecoder { Unspecified = 0, Wan = 1, Tae = 2 }
    /// <summary>What a take records: Live, the frames as the session saw them (Unspecified reads as Live), or Full,
    /// also the recorded shots re-decoded with the Wan VAE after the take stops (TakeSaved.FullPath).</summary>
    public enum TakeQuality { Unspecified = 0, Live = 1, Full = 2 }

    public static class ProtoEnums
    {
        public const uint ProtocolVersionCurrent = 1;
        static readonly string[] FrameFormatNames = { "FRAME_FORMAT_UNSPECIFIED", "FRAME_FORMAT_RGB8", "FRAME_FORMAT_RGBA8" };
        static readonly string[] TransportNames = { "TRANSPORT_UNSPECIFIED", "TRANSPORT_INLINE", "TRANSPORT_SHARED_MEMORY" };
        static readonly string[] CueModeNames = { "CUE_MODE_UNSPECIFIED", "CUE_MODE_WAIT", "CUE_MODE_CUT" };
        static readonly string[] DecoderNames = { "DECODER_UNSPECIFIED", "DECODER_WAN", "DECODER_TAE" };
        static readonly string[] TakeQualityNames = { "TAKE_QUALITY_UNSPECIFIED", "TAKE_QUALITY_LIVE", "TAKE_QUALITY_FULL" };

        public static string Name(FrameFormat v) { return NameOf(FrameFormatNames, (int)v); }
        public static string Name(Transport v) { return NameOf(TransportNames, (int)v); }
        public static string Name(CueMode v) { return NameOf(CueModeNames, (int)v); }
        public static string Name(FrameDecoder v) { return NameOf(DecoderNames, (int)v); }
        public static string Name(TakeQuality v) { return NameOf(TakeQualityNames, (int)v); }
        public static IReadOnlyList<string> AllFrameFormatNames { get { return FrameFormatNames; } }
        public static IReadOnlyList<string> AllTransportNames { get { return TransportNames; } }
        public static IReadOnlyList<string> AllCueModeNames { get { return CueModeNames; } }
        public static IReadOnlyList<string> AllDecoderNames { get { return DecoderNames; } }
        public static IReadOnlyList<string> AllTakeQualityNames { get { return TakeQualityNames; } }

        /// <summary>Bytes per pixel: 4 for RGBA8, else 3 (UNSPECIFIED is treated as RGB8).</summary>
        public static int Channels(FrameFormat f) { return f == FrameFormat.Rgba8 ? 4 : 3; }

        static string NameOf(string[] names, int v)
        {
            if (v < 0 || v >= names.Length) throw new ArgumentOutOfRangeException("value", v, "unknown enum value");
            return names[v];
        }

        // An unknown name or number (a newer server) reads as 0, as with ignore_unknown_fields.
        internal static int Parse(string[] names, JsonValue v, string field)
        {
            if (v.Kind == JsonKind.String)
            {
                int i = Array.IndexOf(names, v.AsString);
                return i < 0 ? 0 : i;
            }
            if (v.Kind == JsonKind.Number)
            {
                uint n = Json.ToUInt32(v, field);
                return n < names.Length ? (int)n : 0;
            }
            throw new JsonException("field " + field + ": expected an enum name or number, got " + v.Kind);
        }
        internal static FrameFormat ParseFrameFormat(JsonValue v, string f) { return (FrameFormat)Parse(FrameFormatNames, v, f); }
        internal static Transport ParseTransport(JsonValue v, string f) { return (Transport)Parse(TransportNames, v, f); }
        internal static CueMode ParseCueMode(JsonValue v, string f) { return (CueMode)Parse(CueModeNames, v, f); }
        internal static FrameDecoder ParseDecoder(JsonValue v, string f) { return (FrameDecoder)Parse(DecoderNames, v, f); }
        internal static TakeQuality ParseTakeQuality(JsonValue v, string f) { return (TakeQuality)Parse(TakeQualityNames, v, f); }
    }

    /// <summary>Base of every message: proto3 JSON in and out.</summary>
    public abstract class ProtoMessage
    {
        /// <summary>Reads one field (key as camelCase or proto name); unknown keys are ignored.</summary>
        protected abstract void ReadField(string key, JsonValue value);
        /// <summary>Writes the non-default fields.</summary>
        protected internal abstract void WriteFields(JsonValue obj);

        public JsonValue ToJsonValue() { var o = JsonValue.NewObject(); WriteFields(o); return o; }
        public string ToJson() { return Json.Write(ToJsonValue()); }
        public override string ToString() { return GetType().Name + ToJson(); }

        public static T FromJsonValue<T>(JsonValue v) where T : ProtoMessage, new()
        {
            var m = new T();
            if (v == null || v.Kind == JsonKind.Null) return m;
            if (v.Kind != JsonKind.Object) throw new JsonException(typeof(T).Name + ": expected a JSON object, got " + v.Kind);
            foreach (var kv in v.Members)
            {
                if (kv.Value.Kind == JsonKind.Null) continue;  // proto3 JSON: null = default
                m.ReadField(kv.Key, kv.Value);
            }
            return m;
        }
        public static T FromJson<T>(string json) where T : ProtoMessage, new() { return FromJsonValue<T>(Json.Parse(json)); }

        // -- helpers ----------------------------------------------------------------------------
        protected static string Str(JsonValue v, string f)
        {
            if (v.Kind != JsonKind.String) throw new JsonException("field " + f + ": expected a string, got " + v.Kind);
            return v.AsString;
        }
        protected static bool Bool(JsonValue v, string f)
        {
            if (v.Kind != JsonKind.Bool) throw new JsonException("field " + f + ": expected true/false, got " + v.Kind);
            return v.AsBool;
        }
        protected static List<string> StrList(JsonValue v, string f)
        {
            if (v.Kind != JsonKind.Array) throw new JsonException("field " + f + ": expected an array, got " + v.Kind);
            var r = new List<string>();
            foreach (var item in v.Items) r.Add(Str(item, f));
            return r;
        }
        /// <summary>A proto3 JSON bytes field: base64, standard or URL-safe, padded or not.</summary>
        protected static byte[] BytesField(JsonValue v, string f)
        {
            string s = Str(v, f).Replace('-', '+').Replace('_', '/');
            if (s.Length % 4 == 1) throw new JsonException("field " + f + ": not base64");
            if (s.Length % 4 != 0) s += new string('=', 4 - s.Length % 4);
            try { return Convert.FromBase64String(s); }
            catch (FormatException) { throw new JsonException("field " + f + ": not base64"); }
        }
        protected static void Put(JsonValue o, string k, byte[] v) { if (v != null && v.Length > 0) o.Set(k, JsonValue.FromString(Convert.ToBase64String(v))); }
        protected static void Put(JsonValue o, string k, string v) { if (!string.IsNullOrEmpty(v)) o.Set(k, JsonValue.FromString(v)); }
        protected static void Put(JsonValue o, string k, uint v) { if (v != 0) o.Set(k, Json.Number(v)); }
        protected static void Put(JsonValue o, string k, ulong v) { if (v != 0) o.Set(k, Json.UInt64String(v)); }
        protected static void Put(JsonValue o, string k, double v) { if (v != 0 || double.IsNaN(v)) o.Set(k, Json.Number(v)); }
        protected static void Put(JsonValue o, string k, bool v) { if (v) o.Set(k, JsonValue.True); }
        protected static void Put(JsonValue o, string k, ProtoMessage m) { if (m != null) o.Set(k, m.ToJsonValue()); }
        protected static void Put(JsonValue o, string k, IList<string> list)
        {
            if (list == null || list.Count == 0) return;
            var a = JsonValue.NewArray();
            foreach (var s in list) a.Add(JsonValue.FromString(s));
            o.Set(k, a);
        }
    }

    // ===================================== client -> server =====================================

    public sealed class OpenSession : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "protocol_version", "client_name", "global_caption", "seed", "frame_format", "transport", "max_chunks_in_flight",
            "decoder", "snapshot", "fork" };
        public uint ProtocolVersion = ProtoEnums.ProtocolVersionCurrent;
        public string ClientName = "";
        public string GlobalCaption = "";
        public ulong Seed;
        public FrameFormat FrameFormat;
        public Transport Transport;
        public uint MaxChunksInFlight;
        /// <summary>Unspecified (left out of the message): the server's default. Tae needs a server that has the tiny decoder.</summary>
        public FrameDecoder Decoder;
        /// <summary>Continue a saved story: the snapshot's first part (at most <see cref="SnapshotParts.MaxUploadPartBytes"/> of data,
        /// with TotalBytes); the rest follows as snapshot_part messages (<see cref="SnapshotParts.Split"/>). Caption, seed and
        /// decoder then come from the snapshot (leave Decoder unset). Null: a new story.</summary>
        public SnapshotPart Snapshot;
        /// <summary>Start from another open session's story at its shot boundary. Null: no fork.</summary>
        public Fork Fork;

        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "protocolVersion": case "protocol_version": ProtocolVersion = Json.ToUInt32(v, k); break;
                case "clientName": case "client_name": ClientName = Str(v, k); break;
                case "globalCaption": case "global_caption": GlobalCaption = Str(v, k); break;
                case "seed": Seed = Json.ToUInt64(v, k); break;
                case "frameFormat": case "frame_format": FrameFormat = ProtoEnums.ParseFrameFormat(v, k); break;
                case "transport": Transport = ProtoEnums.ParseTransport(v, k); break;
                case "maxChunksInFlight": case "max_chunks_in_flight": MaxChunksInFlight = Json.ToUInt32(v, k); break;
                case "decoder": Decoder = ProtoEnums.ParseDecoder(v, k); break;
                case "snapshot": Snapshot = FromJsonValue<SnapshotPart>(v); break;
                case "fork": Fork = FromJsonValue<Fork>(v); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "protocolVersion", ProtocolVersion); Put(o, "clientName", ClientName); Put(o, "globalCaption", GlobalCaption);
            Put(o, "seed", Seed);
            if (FrameFormat != FrameFormat.Unspecified) o.Set("frameFormat", JsonValue.FromString(ProtoEnums.Name(FrameFormat)));
            if (Transport != Transport.Unspecified) o.Set("transport", JsonValue.FromString(ProtoEnums.Name(Transport)));
            Put(o, "maxChunksInFlight", MaxChunksInFlight);
            if (Decoder != FrameDecoder.Unspecified) o.Set("decoder", JsonValue.FromString(ProtoEnums.Name(Decoder)));
            Put(o, "snapshot", Snapshot); Put(o, "fork", Fork);
        }
    }

    /// <summary>A part of a story snapshot (opaque bytes: keep them with the game save). Both ways: the server sends a snapshot
    /// in parts of up to 1 MiB (Index, Count, NextShotIndex set); a client sends one as OpenSession.Snapshot (the first part,
    /// with TotalBytes) and then snapshot_part messages, each within the server's 64 KiB message limit.</summary>
    public sealed class SnapshotPart : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "data", "total_bytes", "index", "count", "next_shot_index" };
        /// <summary>This part's bytes (null or empty when there are none).</summary>
        public byte[] Data;
        /// <summary>The whole snapshot's size (the same in every part).</summary>
        public ulong TotalBytes;
        /// <summary>0-based.</summary>
        public uint Index;
        /// <summary>Parts in all (server to client; clients may leave it 0).</summary>
        public uint Count;
        /// <summary>Server to client: the shot the story continues with.</summary>
        public uint NextShotIndex;
        public int DataLength { get { return Data == null ? 0 : Data.Length; } }
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "data": Data = BytesField(v, k); break;
                case "totalBytes": case "total_bytes": TotalBytes = Json.ToUInt64(v, k); break;
                case "index": Index = Json.ToUInt32(v, k); break;
                case "count": Count = Json.ToUInt32(v, k); break;
                case "nextShotIndex": case "next_shot_index": NextShotIndex = Json.ToUInt32(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "data", Data); Put(o, "totalBytes", TotalBytes); Put(o, "index", Index); Put(o, "count", Count); Put(o, "nextShotIndex", NextShotIndex);
        }
    }

    /// <summary>Asks for the story's snapshot (answered with snapshot parts). WaitForBoundary false: refused (a non-fatal
    /// FAILED_PRECONDITION) while a shot is in progress; true: taken when the current shot ends (or its cut lands), before the
    /// next queued shot starts.</summary>
    public sealed class SnapshotRequest : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "wait_for_boundary" };
        public bool WaitForBoundary;
        protected override void ReadField(string k, JsonValue v)
        {
            if (k == "waitForBoundary" || k == "wait_for_boundary") WaitForBoundary = Bool(v, k);
        }
        protected internal override void WriteFields(JsonValue o) { Put(o, "waitForBoundary", WaitForBoundary); }
    }

    /// <summary>OpenSession.Fork: start from another open session's story (SessionOpened.SessionId) at its shot boundary.</summary>
    public sealed class Fork : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "session_id", "wait_for_boundary" };
        public string SessionId = "";
        /// <summary>As in <see cref="SnapshotRequest"/>: false refuses (fatally) while the other session is mid-shot.</summary>
        public bool WaitForBoundary;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "sessionId": case "session_id": SessionId = Str(v, k); break;
                case "waitForBoundary": case "wait_for_boundary": WaitForBoundary = Bool(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o) { Put(o, "sessionId", SessionId); Put(o, "waitForBoundary", WaitForBoundary); }
    }

    /// <summary>Asks for the cue log: every cue that became a shot, with the chunks it made, from shot FromShot on (a long log
    /// comes in pages: CueLog.NextShot).</summary>
    public sealed class CueLogRequest : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "from_shot" };
        public uint FromShot;
        protected override void ReadField(string k, JsonValue v)
        {
            if (k == "fromShot" || k == "from_shot") FromShot = Json.ToUInt32(v, k);
        }
        protected internal override void WriteFields(JsonValue o) { Put(o, "fromShot", FromShot); }
    }

    public sealed class Cue : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "event_id", "prompt", "tags", "num_chunks", "mode", "at_chunk" };
        public string EventId = "";
        public string Prompt = "";
        public List<string> Tags = new List<string>();
        public uint NumChunks;
        public CueMode Mode;
        /// <summary>Cut cues only: the cut lands after this many chunks of the shot in progress (0 = at its next chunk boundary,
        /// whenever the cue arrives; a cue that arrives later than that cuts at the next boundary).</summary>
        public uint AtChunk;

        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "eventId": case "event_id": EventId = Str(v, k); break;
                case "prompt": Prompt = Str(v, k); break;
                case "tags": Tags = StrList(v, k); break;
                case "numChunks": case "num_chunks": NumChunks = Json.ToUInt32(v, k); break;
                case "mode": Mode = ProtoEnums.ParseCueMode(v, k); break;
                case "atChunk": case "at_chunk": AtChunk = Json.ToUInt32(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "eventId", EventId); Put(o, "prompt", Prompt); Put(o, "tags", Tags); Put(o, "numChunks", NumChunks);
            if (Mode != CueMode.Unspecified) o.Set("mode", JsonValue.FromString(ProtoEnums.Name(Mode)));
            Put(o, "atChunk", AtChunk);
        }
    }

    public sealed class Ack : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "chunk_seq" };
        public ulong ChunkSeq;
        protected override void ReadField(string k, JsonValue v)
        {
            if (k == "chunkSeq" || k == "chunk_seq") ChunkSeq = Json.ToUInt64(v, k);
        }
        protected internal override void WriteFields(JsonValue o) { Put(o, "chunkSeq", ChunkSeq); }
    }

    /// <summary>Records the session's frames, from the next chunk on, into an MP4 on the server's host
    /// (one take at a time; the server answers take_started, and take_saved after stop_take or the session's end).</summary>
    public sealed class StartTake : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "name", "quality" };
        /// <summary>File name without ".mp4" (1-64 of A-Z a-z 0-9 - _ .); "" lets the server name it "&lt;session&gt;-take&lt;n&gt;".</summary>
        public string Name = "";
        /// <summary>Unspecified (left out of the message) = Live. Full: at most the server's max_take_full_shots shots, then the take stops.</summary>
        public TakeQuality Quality;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "name": Name = Str(v, k); break;
                case "quality": Quality = ProtoEnums.ParseTakeQuality(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "name", Name);
            if (Quality != TakeQuality.Unspecified) o.Set("quality", JsonValue.FromString(ProtoEnums.Name(Quality)));
        }
    }

    /// <summary>Pause, Resume, Close and StopTake have no fields.</summary>
    public sealed class Empty : ProtoMessage
    {
        public static readonly string[] ProtoFields = new string[0];
        protected override void ReadField(string k, JsonValue v) { }
        protected internal override void WriteFields(JsonValue o) { }
    }

    public enum ClientKind { Open, Cue, Ack, Pause, Resume, Close, StartTake, StopTake, Snapshot, SnapshotPart, CueLog }

    public sealed class ClientMessage
    {
        public static readonly string[] ProtoFields = { "open", "cue", "ack", "pause", "resume", "close", "start_take", "stop_take",
            "snapshot", "snapshot_part", "cue_log" };
        static readonly string[] JsonNames = { "open", "cue", "ack", "pause", "resume", "close", "startTake", "stopTake",
            "snapshot", "snapshotPart", "cueLog" };

        public readonly ClientKind Kind;
        public readonly ProtoMessage Body;

        ClientMessage(ClientKind kind, ProtoMessage body) { Kind = kind; Body = body ?? new Empty(); }

        public static ClientMessage Open(OpenSession o) { if (o == null) throw new ArgumentNullException(nameof(o)); return new ClientMessage(ClientKind.Open, o); }
        public static ClientMessage CueMessage(Cue c) { if (c == null) throw new ArgumentNullException(nameof(c)); return new ClientMessage(ClientKind.Cue, c); }
        public static ClientMessage AckMessage(ulong chunkSeq) { return new ClientMessage(ClientKind.Ack, new Ack { ChunkSeq = chunkSeq }); }
        public static ClientMessage Pause() { return new ClientMessage(ClientKind.Pause, null); }
        public static ClientMessage Resume() { return new ClientMessage(ClientKind.Resume, null); }
        public static ClientMessage Close() { return new ClientMessage(ClientKind.Close, null); }
        /// <summary>start_take; <paramref name="name"/> "" (or null) lets the server pick the file name; <paramref name="quality"/>
        /// Unspecified (left out of the message) is read as Live.</summary>
        public static ClientMessage StartTakeMessage(string name = "", TakeQuality quality = TakeQuality.Unspecified)
        {
            return new ClientMessage(ClientKind.StartTake, new StartTake { Name = name ?? "", Quality = quality });
        }
        public static ClientMessage StopTakeMessage() { return new ClientMessage(ClientKind.StopTake, null); }
        /// <summary>snapshot: ask for the story's snapshot (see <see cref="SnapshotRequest"/>).</summary>
        public static ClientMessage SnapshotMessage(bool waitForBoundary) { return new ClientMessage(ClientKind.Snapshot, new SnapshotRequest { WaitForBoundary = waitForBoundary }); }
        /// <summary>snapshot_part: a later part of the snapshot OpenSession.Snapshot began (see <see cref="SnapshotParts.Split"/>).</summary>
        public static ClientMessage SnapshotPartMessage(SnapshotPart part) { if (part == null) throw new ArgumentNullException(nameof(part)); return new ClientMessage(ClientKind.SnapshotPart, part); }
        /// <summary>cue_log: the cue log from shot <paramref name="fromShot"/> on.</summary>
        public static ClientMessage CueLogMessage(uint fromShot = 0) { return new ClientMessage(ClientKind.CueLog, new CueLogRequest { FromShot = fromShot }); }

        public OpenSession AsOpen { get { return (OpenSession)Body; } }
        public Cue AsCue { get { return (Cue)Body; } }
        public Ack AsAck { get { return (Ack)Body; } }
        public StartTake AsStartTake { get { return (StartTake)Body; } }
        public SnapshotRequest AsSnapshot { get { return (SnapshotRequest)Body; } }
        public SnapshotPart AsSnapshotPart { get { return (SnapshotPart)Body; } }
        public CueLogRequest AsCueLog { get { return (CueLogRequest)Body; } }

        public string ToJson()
        {
            var o = JsonValue.NewObject();
            o.Set(JsonNames[(int)Kind], Body.ToJsonValue());
            return Json.Write(o);
        }

        public static ClientMessage FromJson(string json)
        {
            JsonValue v = Json.Parse(json);
            if (v.Kind != JsonKind.Object) throw new JsonException("ClientMessage: expected a JSON object");
            ClientMessage found = null;
            foreach (var kv in v.Members)
            {
                if (kv.Value.Kind == JsonKind.Null) continue;
                int i = Array.IndexOf(JsonNames, kv.Key);
                if (i < 0) i = Array.IndexOf(ProtoFields, kv.Key);
                if (i < 0) continue;
                var kind = (ClientKind)i;
                ProtoMessage body;
                switch (kind)
                {
                    case ClientKind.Open: body = ProtoMessage.FromJsonValue<OpenSession>(kv.Value); break;
                    case ClientKind.Cue: body = ProtoMessage.FromJsonValue<Cue>(kv.Value); break;
                    case ClientKind.Ack: body = ProtoMessage.FromJsonValue<Ack>(kv.Value); break;
                    case ClientKind.StartTake: body = ProtoMessage.FromJsonValue<StartTake>(kv.Value); break;
                    case ClientKind.Snapshot: body = ProtoMessage.FromJsonValue<SnapshotRequest>(kv.Value); break;
                    case ClientKind.SnapshotPart: body = ProtoMessage.FromJsonValue<SnapshotPart>(kv.Value); break;
                    case ClientKind.CueLog: body = ProtoMessage.FromJsonValue<CueLogRequest>(kv.Value); break;
                    default: body = ProtoMessage.FromJsonValue<Empty>(kv.Value); break;
                }
                if (found != null) throw new JsonException("ClientMessage: more than one kind set (oneof)");
                found = new ClientMessage(kind, body);
            }
            if (found == null) throw new JsonException("ClientMessage: no known kind (" + string.Join("/", JsonNames) + ")");
            return found;
        }
    }

    // ===================================== server -> client =====================================

    public sealed class RingLayout : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "path", "layout_version", "slot_count", "slot_bytes", "header_bytes", "slot_header_bytes" };
        public string Path = "";
        public uint LayoutVersion;
        public uint SlotCount;
        public ulong SlotBytes;
        public uint HeaderBytes;
        public uint SlotHeaderBytes;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "path": Path = Str(v, k); break;
                case "layoutVersion": case "layout_version": LayoutVersion = Json.ToUInt32(v, k); break;
                case "slotCount": case "slot_count": SlotCount = Json.ToUInt32(v, k); break;
                case "slotBytes": case "slot_bytes": SlotBytes = Json.ToUInt64(v, k); break;
                case "headerBytes": case "header_bytes": HeaderBytes = Json.ToUInt32(v, k); break;
                case "slotHeaderBytes": case "slot_header_bytes": SlotHeaderBytes = Json.ToUInt32(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "path", Path); Put(o, "layoutVersion", LayoutVersion); Put(o, "slotCount", SlotCount);
            Put(o, "slotBytes", SlotBytes); Put(o, "headerBytes", HeaderBytes); Put(o, "slotHeaderBytes", SlotHeaderBytes);
        }
    }

    public sealed class SessionOpened : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "session_id", "protocol_version", "width", "height", "fps", "frames_first_chunk", "frames_per_chunk",
            "max_chunks_per_shot", "frame_format", "transport", "max_chunks_in_flight", "ring", "model", "random_weights", "decoder" };
        public string SessionId = "";
        public uint ProtocolVersion, Width, Height, Fps, FramesFirstChunk, FramesPerChunk, MaxChunksPerShot;
        public FrameFormat FrameFormat;
        public Transport Transport;
        public uint MaxChunksInFlight;
        public RingLayout Ring;  // null unless transport = SHARED_MEMORY
        public string Model = "";
        public bool RandomWeights;
        /// <summary>The decoder the server chose (never Unspecified from a server that knows decoders; Unspecified from an older one).</summary>
        public FrameDecoder Decoder;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "sessionId": case "session_id": SessionId = Str(v, k); break;
                case "protocolVersion": case "protocol_version": ProtocolVersion = Json.ToUInt32(v, k); break;
                case "width": Width = Json.ToUInt32(v, k); break;
                case "height": Height = Json.ToUInt32(v, k); break;
                case "fps": Fps = Json.ToUInt32(v, k); break;
                case "framesFirstChunk": case "frames_first_chunk": FramesFirstChunk = Json.ToUInt32(v, k); break;
                case "framesPerChunk": case "frames_per_chunk": FramesPerChunk = Json.ToUInt32(v, k); break;
                case "maxChunksPerShot": case "max_chunks_per_shot": MaxChunksPerShot = Json.ToUInt32(v, k); break;
                case "frameFormat": case "frame_format": FrameFormat = ProtoEnums.ParseFrameFormat(v, k); break;
                case "transport": Transport = ProtoEnums.ParseTransport(v, k); break;
                case "maxChunksInFlight": case "max_chunks_in_flight": MaxChunksInFlight = Json.ToUInt32(v, k); break;
                case "ring": Ring = FromJsonValue<RingLayout>(v); break;
                case "model": Model = Str(v, k); break;
                case "randomWeights": case "random_weights": RandomWeights = Bool(v, k); break;
                case "decoder": Decoder = ProtoEnums.ParseDecoder(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "sessionId", SessionId); Put(o, "protocolVersion", ProtocolVersion); Put(o, "width", Width); Put(o, "height", Height);
            Put(o, "fps", Fps); Put(o, "framesFirstChunk", FramesFirstChunk); Put(o, "framesPerChunk", FramesPerChunk);
            Put(o, "maxChunksPerShot", MaxChunksPerShot);
            if (FrameFormat != FrameFormat.Unspecified) o.Set("frameFormat", JsonValue.FromString(ProtoEnums.Name(FrameFormat)));
            if (Transport != Transport.Unspecified) o.Set("transport", JsonValue.FromString(ProtoEnums.Name(Transport)));
            Put(o, "maxChunksInFlight", MaxChunksInFlight); Put(o, "ring", Ring); Put(o, "model", Model); Put(o, "randomWeights", RandomWeights);
            if (Decoder != FrameDecoder.Unspecified) o.Set("decoder", JsonValue.FromString(ProtoEnums.Name(Decoder)));
        }
    }

    public sealed class CueAccepted : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "event_id", "queue_position" };
        public string EventId = "";
        public uint QueuePosition;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "eventId": case "event_id": EventId = Str(v, k); break;
                case "queuePosition": case "queue_position": QueuePosition = Json.ToUInt32(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o) { Put(o, "eventId", EventId); Put(o, "queuePosition", QueuePosition); }
    }

    public sealed class ShotStarted : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "event_id", "tags", "shot_index", "num_chunks", "num_frames", "prompt_tokens", "truncated_tokens", "setup_ms" };
        public string EventId = "";
        public List<string> Tags = new List<string>();
        public uint ShotIndex, NumChunks, NumFrames, PromptTokens, TruncatedTokens;
        public double SetupMs;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "eventId": case "event_id": EventId = Str(v, k); break;
                case "tags": Tags = StrList(v, k); break;
                case "shotIndex": case "shot_index": ShotIndex = Json.ToUInt32(v, k); break;
                case "numChunks": case "num_chunks": NumChunks = Json.ToUInt32(v, k); break;
                case "numFrames": case "num_frames": NumFrames = Json.ToUInt32(v, k); break;
                case "promptTokens": case "prompt_tokens": PromptTokens = Json.ToUInt32(v, k); break;
                case "truncatedTokens": case "truncated_tokens": TruncatedTokens = Json.ToUInt32(v, k); break;
                case "setupMs": case "setup_ms": SetupMs = Json.ToDouble(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "eventId", EventId); Put(o, "tags", Tags); Put(o, "shotIndex", ShotIndex); Put(o, "numChunks", NumChunks);
            Put(o, "numFrames", NumFrames); Put(o, "promptTokens", PromptTokens); Put(o, "truncatedTokens", TruncatedTokens); Put(o, "setupMs", SetupMs);
        }
    }

    public sealed class RingSlot : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "slot", "sequence", "offset", "length" };
        public uint Slot;
        public ulong Sequence, Offset, Length;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "slot": Slot = Json.ToUInt32(v, k); break;
                case "sequence": Sequence = Json.ToUInt64(v, k); break;
                case "offset": Offset = Json.ToUInt64(v, k); break;
                case "length": Length = Json.ToUInt64(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            // Inside a set oneof the message itself is written even when all its fields are 0.
            Put(o, "slot", Slot); Put(o, "sequence", Sequence); Put(o, "offset", Offset); Put(o, "length", Length);
        }
    }

    public sealed class ChunkTiming : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "commit_ms", "denoise_ms", "decode_ms", "queue_ms", "since_shot_start_ms" };
        public double CommitMs, DenoiseMs, DecodeMs, QueueMs, SinceShotStartMs;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "commitMs": case "commit_ms": CommitMs = Json.ToDouble(v, k); break;
                case "denoiseMs": case "denoise_ms": DenoiseMs = Json.ToDouble(v, k); break;
                case "decodeMs": case "decode_ms": DecodeMs = Json.ToDouble(v, k); break;
                case "queueMs": case "queue_ms": QueueMs = Json.ToDouble(v, k); break;
                case "sinceShotStartMs": case "since_shot_start_ms": SinceShotStartMs = Json.ToDouble(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "commitMs", CommitMs); Put(o, "denoiseMs", DenoiseMs); Put(o, "decodeMs", DecodeMs); Put(o, "queueMs", QueueMs);
            Put(o, "sinceShotStartMs", SinceShotStartMs);
        }
    }

    public sealed class FrameChunk : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "chunk_seq", "event_id", "shot_index", "chunk_index", "first_frame", "story_frame", "num_frames",
            "width", "height", "frame_format", "last_in_shot", "pixels", "ring_slot", "timing" };
        public ulong ChunkSeq;
        public string EventId = "";
        public uint ShotIndex, ChunkIndex, FirstFrame;
        public ulong StoryFrame;
        public uint NumFrames, Width, Height;
        public FrameFormat FrameFormat;
        public bool LastInShot;
        /// <summary>Inline pixels (from a binary SSC1 frame, which does not copy them); Array is null when absent.</summary>
        public ArraySegment<byte> Pixels;
        public RingSlot RingSlot;  // set for TRANSPORT_SHARED_MEMORY
        public ChunkTiming Timing;

        public bool HasPixels { get { return Pixels.Array != null; } }
        public int Channels { get { return ProtoEnums.Channels(FrameFormat); } }
        /// <summary>numFrames * height * width * channels, checked for overflow.</summary>
        public long ExpectedPixelBytes { get { return checked((long)NumFrames * Height * Width * Channels); } }

        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "chunkSeq": case "chunk_seq": ChunkSeq = Json.ToUInt64(v, k); break;
                case "eventId": case "event_id": EventId = Str(v, k); break;
                case "shotIndex": case "shot_index": ShotIndex = Json.ToUInt32(v, k); break;
                case "chunkIndex": case "chunk_index": ChunkIndex = Json.ToUInt32(v, k); break;
                case "firstFrame": case "first_frame": FirstFrame = Json.ToUInt32(v, k); break;
                case "storyFrame": case "story_frame": StoryFrame = Json.ToUInt64(v, k); break;
                case "numFrames": case "num_frames": NumFrames = Json.ToUInt32(v, k); break;
                case "width": Width = Json.ToUInt32(v, k); break;
                case "height": Height = Json.ToUInt32(v, k); break;
                case "frameFormat": case "frame_format": FrameFormat = ProtoEnums.ParseFrameFormat(v, k); break;
                case "lastInShot": case "last_in_shot": LastInShot = Bool(v, k); break;
                case "pixels":
                    try { Pixels = new ArraySegment<byte>(Convert.FromBase64String(Str(v, k).Replace('-', '+').Replace('_', '/'))); }
                    catch (FormatException) { throw new JsonException("field pixels: not base64"); }
                    break;
                case "ringSlot": case "ring_slot": RingSlot = FromJsonValue<RingSlot>(v); break;
                case "timing": Timing = FromJsonValue<ChunkTiming>(v); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "chunkSeq", ChunkSeq); Put(o, "eventId", EventId); Put(o, "shotIndex", ShotIndex); Put(o, "chunkIndex", ChunkIndex);
            Put(o, "firstFrame", FirstFrame); Put(o, "storyFrame", StoryFrame); Put(o, "numFrames", NumFrames); Put(o, "width", Width);
            Put(o, "height", Height);
            if (FrameFormat != FrameFormat.Unspecified) o.Set("frameFormat", JsonValue.FromString(ProtoEnums.Name(FrameFormat)));
            Put(o, "lastInShot", LastInShot);
            if (HasPixels) o.Set("pixels", JsonValue.FromString(Convert.ToBase64String(Pixels.Array, Pixels.Offset, Pixels.Count)));
            Put(o, "ringSlot", RingSlot); Put(o, "timing", Timing);
        }
    }

    public sealed class ShotFinished : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "event_id", "shot_index", "chunks", "frames", "cut" };
        public string EventId = "";
        public uint ShotIndex, Chunks, Frames;
        public bool Cut;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "eventId": case "event_id": EventId = Str(v, k); break;
                case "shotIndex": case "shot_index": ShotIndex = Json.ToUInt32(v, k); break;
                case "chunks": Chunks = Json.ToUInt32(v, k); break;
                case "frames": Frames = Json.ToUInt32(v, k); break;
                case "cut": Cut = Bool(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "eventId", EventId); Put(o, "shotIndex", ShotIndex); Put(o, "chunks", Chunks); Put(o, "frames", Frames); Put(o, "cut", Cut);
        }
    }

    public sealed class Stats : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "chunks_sent", "frames_sent", "chunk_ms_mean", "fps", "queued_cues", "chunks_in_flight", "paused",
            "sessions", "gpu_memory_used_bytes" };
        public ulong ChunksSent, FramesSent;
        public double ChunkMsMean, Fps;
        public uint QueuedCues, ChunksInFlight;
        public bool Paused;
        public uint Sessions;
        public ulong GpuMemoryUsedBytes;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "chunksSent": case "chunks_sent": ChunksSent = Json.ToUInt64(v, k); break;
                case "framesSent": case "frames_sent": FramesSent = Json.ToUInt64(v, k); break;
                case "chunkMsMean": case "chunk_ms_mean": ChunkMsMean = Json.ToDouble(v, k); break;
                case "fps": Fps = Json.ToDouble(v, k); break;
                case "queuedCues": case "queued_cues": QueuedCues = Json.ToUInt32(v, k); break;
                case "chunksInFlight": case "chunks_in_flight": ChunksInFlight = Json.ToUInt32(v, k); break;
                case "paused": Paused = Bool(v, k); break;
                case "sessions": Sessions = Json.ToUInt32(v, k); break;
                case "gpuMemoryUsedBytes": case "gpu_memory_used_bytes": GpuMemoryUsedBytes = Json.ToUInt64(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "chunksSent", ChunksSent); Put(o, "framesSent", FramesSent); Put(o, "chunkMsMean", ChunkMsMean); Put(o, "fps", Fps);
            Put(o, "queuedCues", QueuedCues); Put(o, "chunksInFlight", ChunksInFlight); Put(o, "paused", Paused); Put(o, "sessions", Sessions);
            Put(o, "gpuMemoryUsedBytes", GpuMemoryUsedBytes);
        }
    }

    /// <summary>shotstream.v1.Error.</summary>
    public sealed class ServerError : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "code", "message", "event_id", "fatal" };
        public uint Code;  // a grpc.StatusCode value
        public string Message = "";
        public string EventId = "";
        public bool Fatal;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "code": Code = Json.ToUInt32(v, k); break;
                case "message": Message = Str(v, k); break;
                case "eventId": case "event_id": EventId = Str(v, k); break;
                case "fatal": Fatal = Bool(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o) { Put(o, "code", Code); Put(o, "message", Message); Put(o, "eventId", EventId); Put(o, "fatal", Fatal); }
    }

    public sealed class SessionClosed : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "reason" };
        public string Reason = "";
        protected override void ReadField(string k, JsonValue v) { if (k == "reason") Reason = Str(v, k); }
        protected internal override void WriteFields(JsonValue o) { Put(o, "reason", Reason); }
    }

    /// <summary>The server started recording a take (answer to start_take).</summary>
    public sealed class TakeStarted : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "name", "path", "quality", "full_path" };
        public string Name = "";
        /// <summary>Absolute path the MP4 will have on the server's host.</summary>
        public string Path = "";
        /// <summary>The quality granted (Live or Full; Unspecified from a server older than take qualities).</summary>
        public TakeQuality Quality;
        /// <summary>Full with a TAE session: where the Wan-decoded MP4 will be; "" otherwise.</summary>
        public string FullPath = "";
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "name": Name = Str(v, k); break;
                case "path": Path = Str(v, k); break;
                case "quality": Quality = ProtoEnums.ParseTakeQuality(v, k); break;
                case "fullPath": case "full_path": FullPath = Str(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "name", Name); Put(o, "path", Path);
            if (Quality != TakeQuality.Unspecified) o.Set("quality", JsonValue.FromString(ProtoEnums.Name(Quality)));
            Put(o, "fullPath", FullPath);
        }
    }

    /// <summary>A take's MP4 is complete (after stop_take or the session's end).</summary>
    public sealed class TakeSaved : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "name", "path", "frames", "bytes", "duration_s", "full_path", "full_bytes" };
        public string Name = "";
        /// <summary>Absolute path of the finished MP4 on the server's host.</summary>
        public string Path = "";
        public uint Frames;
        /// <summary>File size.</summary>
        public ulong Bytes;
        /// <summary>Frames / fps.</summary>
        public double DurationS;
        /// <summary>Full takes: the MP4 re-decoded with the Wan VAE ("&lt;name&gt;.full.mp4"; equals Path when the session
        /// already decodes with the Wan VAE); "" for a Live take.</summary>
        public string FullPath = "";
        /// <summary>Size of the file at FullPath.</summary>
        public ulong FullBytes;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "name": Name = Str(v, k); break;
                case "path": Path = Str(v, k); break;
                case "frames": Frames = Json.ToUInt32(v, k); break;
                case "bytes": Bytes = Json.ToUInt64(v, k); break;
                case "durationS": case "duration_s": DurationS = Json.ToDouble(v, k); break;
                case "fullPath": case "full_path": FullPath = Str(v, k); break;
                case "fullBytes": case "full_bytes": FullBytes = Json.ToUInt64(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "name", Name); Put(o, "path", Path); Put(o, "frames", Frames); Put(o, "bytes", Bytes); Put(o, "durationS", DurationS);
            Put(o, "fullPath", FullPath); Put(o, "fullBytes", FullBytes);
        }
    }

    /// <summary>The story is restored (answer to OpenSession.Snapshot or Fork): the next cue becomes shot NextShotIndex.</summary>
    public sealed class SnapshotRestored : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "next_shot_index", "story_frames" };
        public uint NextShotIndex;
        /// <summary>Frames in the restored story's shots (FrameChunk.StoryFrame continues here).</summary>
        public ulong StoryFrames;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "nextShotIndex": case "next_shot_index": NextShotIndex = Json.ToUInt32(v, k); break;
                case "storyFrames": case "story_frames": StoryFrames = Json.ToUInt64(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o) { Put(o, "nextShotIndex", NextShotIndex); Put(o, "storyFrames", StoryFrames); }
    }

    /// <summary>One cue that became a shot, and what the shot made.</summary>
    public sealed class CueLogEntry : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "cue", "shot_index", "chunks", "cut", "finished" };
        /// <summary>As sent (event id, prompt, tags, chunks, mode, at_chunk); null when absent.</summary>
        public Cue Cue;
        public uint ShotIndex;
        /// <summary>Chunks the shot made (fewer than planned when a cut ended it).</summary>
        public uint Chunks;
        /// <summary>A later cut cue ended it.</summary>
        public bool Cut;
        /// <summary>False: still in progress when the log was taken.</summary>
        public bool Finished;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "cue": Cue = FromJsonValue<Cue>(v); break;
                case "shotIndex": case "shot_index": ShotIndex = Json.ToUInt32(v, k); break;
                case "chunks": Chunks = Json.ToUInt32(v, k); break;
                case "cut": Cut = Bool(v, k); break;
                case "finished": Finished = Bool(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "cue", Cue); Put(o, "shotIndex", ShotIndex); Put(o, "chunks", Chunks); Put(o, "cut", Cut); Put(o, "finished", Finished);
        }
    }

    /// <summary>What a session played, exactly (answer to cue_log; a long log comes in pages, see NextShot).</summary>
    public sealed class CueLog : ProtoMessage
    {
        public static readonly string[] ProtoFields = { "global_caption", "seed", "decoder", "first_shot_index", "entries", "next_shot", "dropped_shots" };
        public string GlobalCaption = "";
        public ulong Seed;
        public FrameDecoder Decoder;
        /// <summary>&gt; 0: the session began from a snapshot taken before this shot (a replay starts from that snapshot).</summary>
        public uint FirstShotIndex;
        /// <summary>In shot order.</summary>
        public List<CueLogEntry> Entries = new List<CueLogEntry>();
        /// <summary>&gt; 0: more entries follow: ask again from this shot.</summary>
        public uint NextShot;
        /// <summary>&gt; 0: the oldest shots' entries were dropped (the server's max_cue_log_shots).</summary>
        public uint DroppedShots;
        protected override void ReadField(string k, JsonValue v)
        {
            switch (k)
            {
                case "globalCaption": case "global_caption": GlobalCaption = Str(v, k); break;
                case "seed": Seed = Json.ToUInt64(v, k); break;
                case "decoder": Decoder = ProtoEnums.ParseDecoder(v, k); break;
                case "firstShotIndex": case "first_shot_index": FirstShotIndex = Json.ToUInt32(v, k); break;
                case "entries":
                    if (v.Kind != JsonKind.Array) throw new JsonException("field " + k + ": expected an array, got " + v.Kind);
                    Entries = new List<CueLogEntry>();
                    foreach (var item in v.Items) Entries.Add(FromJsonValue<CueLogEntry>(item));
                    break;
                case "nextShot": case "next_shot": NextShot = Json.ToUInt32(v, k); break;
                case "droppedShots": case "dropped_shots": DroppedShots = Json.ToUInt32(v, k); break;
            }
        }
        protected internal override void WriteFields(JsonValue o)
        {
            Put(o, "globalCaption", GlobalCaption); Put(o, "seed", Seed);
            if (Decoder != FrameDecoder.Unspecified) o.Set("decoder", JsonValue.FromString(ProtoEnums.Name(Decoder)));
            Put(o, "firstShotIndex", FirstShotIndex);
            if (Entries != null && Entries.Count > 0)
            {
                var a = JsonValue.NewArray();
                foreach (var e in Entries) a.Add(e.ToJsonValue());
                o.Set("entries", a);
            }
            Put(o, "nextShot", NextShot); Put(o, "droppedShots", DroppedShots);
        }
    }

    public enum ServerKind { Opened, CueAccepted, ShotStarted, Chunk, ShotFinished, Stats, Error, Closed, TakeStarted, TakeSaved, Snapshot, Restored, CueLog }

    /// <summary>One server event. For a chunk from a binary frame, Chunk.Pixels points into the receive buffer.</summary>
    public sealed class ServerMessage
    {
        public static readonly string[] ProtoFields = { "opened", "cue_accepted", "shot_started", "chunk", "shot_finished", "stats", "error", "closed",
            "take_started", "take_saved", "snapshot", "restored", "cue_log" };
        static readonly string[] JsonNames = { "opened", "cueAccepted", "shotStarted", "chunk", "shotFinished", "stats", "error", "closed",
            "takeStarted", "takeSaved", "snapshot", "restored", "cueLog" };
        static readonly string[] ProtoNames = ProtoFields;

        public readonly ServerKind Kind;
        public readonly ProtoMessage Body;
        public ServerMessage(ServerKind kind, ProtoMessage body)
        {
            if (body == null) throw new ArgumentNullException(nameof(body));
            Kind = kind; Body = body;
        }

        public SessionOpened Opened { get { return Body as SessionOpened; } }
        public CueAccepted CueAccepted { get { return Body as CueAccepted; } }
        public ShotStarted ShotStarted { get { return Body as ShotStarted; } }
        public FrameChunk Chunk { get { return Body as FrameChunk; } }
        public ShotFinished ShotFinished { get { return Body as ShotFinished; } }
        public Stats Stats { get { return Body as Stats; } }
        public ServerError Error { get { return Body as ServerError; } }
        public SessionClosed Closed { get { return Body as SessionClosed; } }
        public TakeStarted TakeStarted { get { return Body as TakeStarted; } }
        public TakeSaved TakeSaved { get { return Body as TakeSaved; } }
        /// <summary>A part of the story's snapshot (answer to a snapshot request).</summary>
        public SnapshotPart Snapshot { get { return Body as SnapshotPart; } }
        public SnapshotRestored Restored { get { return Body as SnapshotRestored; } }
        public CueLog CueLog { get { return Body as CueLog; } }

        public string ToJson()
        {
            var o = JsonValue.NewObject();
            o.Set(JsonNames[(int)Kind], Body.ToJsonValue());
            return Json.Write(o);
        }

        public static ServerMessage FromJson(string json) { return FromJsonValue(Json.Parse(json)); }

        /// <summary>Exactly one known kind must be set; unknown keys (newer kinds/fields) are ignored.</summary>
        public static ServerMessage FromJsonValue(JsonValue v)
        {
            if (v.Kind != JsonKind.Object) throw new JsonException("ServerMessage: expected a JSON object, got " + v.Kind);
            ServerMessage found = null;
            foreach (var kv in v.Members)
            {
                if (kv.Value.Kind == JsonKind.Null) continue;
                int i = Array.IndexOf(JsonNames, kv.Key);
                if (i < 0) i = Array.IndexOf(ProtoNames, kv.Key);
                if (i < 0) continue;
                var kind = (ServerKind)i;
                ProtoMessage body;
                switch (kind)
                {
                    case ServerKind.Opened: body = ProtoMessage.FromJsonValue<SessionOpened>(kv.Value); break;
                    case ServerKind.CueAccepted: body = ProtoMessage.FromJsonValue<CueAccepted>(kv.Value); break;
                    case ServerKind.ShotStarted: body = ProtoMessage.FromJsonValue<ShotStarted>(kv.Value); break;
                    case ServerKind.Chunk: body = ProtoMessage.FromJsonValue<FrameChunk>(kv.Value); break;
                    case ServerKind.ShotFinished: body = ProtoMessage.FromJsonValue<ShotFinished>(kv.Value); break;
                    case ServerKind.Stats: body = ProtoMessage.FromJsonValue<Stats>(kv.Value); break;
                    case ServerKind.Error: body = ProtoMessage.FromJsonValue<ServerError>(kv.Value); break;
                    case ServerKind.Closed: body = ProtoMessage.FromJsonValue<SessionClosed>(kv.Value); break;
                    case ServerKind.TakeStarted: body = ProtoMessage.FromJsonValue<TakeStarted>(kv.Value); break;
                    case ServerKind.TakeSaved: body = ProtoMessage.FromJsonValue<TakeSaved>(kv.Value); break;
                    case ServerKind.Snapshot: body = ProtoMessage.FromJsonValue<SnapshotPart>(kv.Value); break;
                    case ServerKind.Restored: body = ProtoMessage.FromJsonValue<SnapshotRestored>(kv.Value); break;
                    default: body = ProtoMessage.FromJsonValue<CueLog>(kv.Value); break;
                }
                if (found != null) throw new JsonException("ServerMessage: more than one kind set (oneof)");
                found = new ServerMessage(kind, body);
            }
            if (found == null) throw new JsonException("ServerMessage: no known kind (" + string.Join("/", JsonNames) + ")");
            return found;
        }
    }
}
