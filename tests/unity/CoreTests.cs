// Tests for unity_plugin/com.shotstream.bridge/Runtime/Core under mono (no test framework).
//   mono CoreTests.exe goldens DIR   -> unit + golden tests; prints "N passed, M failed" last; exit 1 on failure
//   mono CoreTests.exe refused URL TOKEN -> ConnectAsync with a wrong token, then to a wrong path, against a gateway
//                                       that has TOKEN: prints "REFUSED status transient message" for each
//   mono CoreTests.exe live URL inline|shm [TAKE stop|close]
//                                    -> one real session over that transport (and a take named TAKE, "" =
//                                       the server's default name, ended by stop_take or by close);
//                                       prints "CHUNK seq eventId crc32 bytes" per chunk
//   mono CoreTests.exe snapshot URL FILE -> session A plays "walk", asks for its snapshot mid-shot, writes it to FILE and plays
//                                       "tail"; session B continues FILE (OpenFromSnapshotAsync) and plays "tail": prints
//                                       "SNAPCHUNK a|b shot storyFrame crc32 bytes" per chunk and "RESTORED next frames"
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using ShotStream.Core;

static class CoreTests
{
    static int passed, failed;
    static string dir;

    static void Eq<T>(T want, T got, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(want, got)) throw new Exception(what + ": expected <" + want + ">, got <" + got + ">");
    }
    static void True(bool c, string what) { if (!c) throw new Exception(what); }
    static void Throws<E>(Action a, string what) where E : Exception
    {
        try { a(); } catch (E) { return; } catch (Exception e) { throw new Exception(what + ": threw " + e.GetType().Name + " " + e.Message); }
        throw new Exception(what + ": did not throw " + typeof(E).Name);
    }
    static void Run(string name, Action t)
    {
        try { t(); passed++; }
        catch (Exception e) { failed++; Console.WriteLine("FAIL " + name + ": " + e.Message); }
    }
    static string Text(string rel) { return Encoding.UTF8.GetString(File.ReadAllBytes(Path.Combine(dir, rel))); }
    static ServerMessage Server(string name) { return ServerMessage.FromJson(Text(Path.Combine("server", name + ".json"))); }

    const string Unicode = "Caf\u00e9 \u2014 \U0001F409 \"q\" back\\slash\nnew\ttab \u0001";

    public static uint Crc32(byte[] a, int off, int n)
    {
        uint crc = 0xFFFFFFFF;
        for (int i = off; i < off + n; i++)
        {
            crc ^= a[i];
            for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (uint)-(int)(crc & 1));
        }
        return ~crc;
    }

    static int Main(string[] args) { return ProcessExit.Now(RunAll(args)); }

    static int RunAll(string[] args)
    {
        if (args.Length >= 3 && args[0] == "live")
            return Live(new Uri(args[1]), args[2] == "shm" ? Transport.SharedMemory : Transport.Inline, args.Length > 3 ? args[3] : null,
                        args.Length > 4 && args[4] == "stop").GetAwaiter().GetResult();
        if (args.Length == 3 && args[0] == "refused") return Refused(new Uri(args[1]), args[2]);
        if (args.Length == 3 && args[0] == "snapshot") return LiveSnapshot(new Uri(args[1]), args[2]).GetAwaiter().GetResult();
        if (args.Length != 2 || args[0] != "goldens") { Console.Error.WriteLine("usage: CoreTests.exe goldens DIR | live URL inline|shm [TAKE stop|close]"); return 2; }
        dir = args[1];
        JsonTests();
        GoldenServerTests();
        GoldenClientTests();
        FieldListTests();
        ChunkFrameTests();
        SnapshotTests();
        PolicyTests();
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }

    static void JsonTests()
    {
        Run("json roundtrip", () =>
        {
            var v = Json.Parse(" {\"a\" : [1, -2.5e3, true, false, null, \"x\\u00e9\\ud83d\\udc09\\/\\b\\f\"], \"b\": {}} ");
            Eq("x\u00e9\U0001F409/\b\f", v["a"].Items[5].AsString, "escapes");
            Eq("-2.5e3", v["a"].Items[1].NumberText, "number text");
            Eq("{\"a\":[1,-2.5e3,true,false,null,\"x\u00e9\U0001F409/\\b\\f\"],\"b\":{}}", Json.Write(v), "write");
        });
        Run("json malformed", () =>
        {
            foreach (var bad in new[] { "", "{", "{\"a\":}", "[1,]", "{\"a\":1,}", "01", "1.", "-", "\"abc", "\"\\x\"", "\"\\ud83d\"",
                                        "\"\\udc09\"", "\"\\ud83d\\u0041\"", "tru", "{\"a\":1}x", "{a:1}", "\"a\tb\"", "{\"a\":1,\"a\":2}", "[1 2]",
                                        new string('[', 100) + new string(']', 100), "\"\\u12g4\"" })
                Throws<JsonException>(() => Json.Parse(bad), "parse " + bad);
        });
        Run("json writer rejects lone surrogate", () => Throws<JsonException>(() => Json.Write(JsonValue.FromString("a\ud83d")), "lone"));
        Run("json invalid utf8", () => Throws<JsonException>(() => Json.Parse(new byte[] { 0x22, 0xff, 0x22 }, 0, 3), "utf8"));
    }

    static void GoldenServerTests()
    {
        Run("opened inline", () =>
        {
            var o = Server("opened_inline").Opened;
            Eq("s-1", o.SessionId, "id"); Eq(1u, o.ProtocolVersion, "pv"); Eq(64u, o.Width, "w"); Eq(32u, o.Height, "h"); Eq(16u, o.Fps, "fps");
            Eq(9u, o.FramesFirstChunk, "ffc"); Eq(12u, o.FramesPerChunk, "fpc"); Eq(7u, o.MaxChunksPerShot, "mcps");
            Eq(FrameFormat.Rgba8, o.FrameFormat, "fmt"); Eq(Transport.Inline, o.Transport, "tr"); Eq(2u, o.MaxChunksInFlight, "credits");
            Eq(null, o.Ring, "ring"); Eq("tiny", o.Model, "model"); Eq(true, o.RandomWeights, "rw");
        });
        Run("opened shm", () =>
        {
            var o = Server("opened_shm").Opened;
            Eq(Transport.SharedMemory, o.Transport, "tr"); Eq(FrameFormat.Rgb8, o.FrameFormat, "fmt"); Eq(false, o.RandomWeights, "rw");
            Eq("/tmp/shotstream-ring-abc", o.Ring.Path, "path"); Eq(1u, o.Ring.LayoutVersion, "lv"); Eq(3u, o.Ring.SlotCount, "sc");
            Eq(12345678901UL, o.Ring.SlotBytes, "sb"); Eq(4096u, o.Ring.HeaderBytes, "hb"); Eq(64u, o.Ring.SlotHeaderBytes, "shb");
            Eq(3u, o.MaxChunksInFlight, "credits"); Eq("wan2.1-t2v-1.3b", o.Model, "model");
            Eq(FrameDecoder.Unspecified, o.Decoder, "no decoder (an older server): Unspecified");
        });
        Run("opened tae", () =>
        {
            var o = Server("opened_tae").Opened;
            Eq("s-3", o.SessionId, "id"); Eq(FrameDecoder.Tae, o.Decoder, "decoder"); Eq("DECODER_TAE", ProtoEnums.Name(o.Decoder), "decoder name");
            Eq(Transport.Inline, o.Transport, "tr"); Eq(FrameFormat.Rgba8, o.FrameFormat, "fmt"); Eq(null, o.Ring, "ring");
            Eq(FrameDecoder.Wan, ServerMessage.FromJson("{\"opened\": {\"decoder\": 1}}").Opened.Decoder, "enum number");
            Eq(FrameDecoder.Wan, ServerMessage.FromJson("{\"opened\": {\"decoder\": \"DECODER_WAN\"}}").Opened.Decoder, "enum name");
            Eq(FrameDecoder.Unspecified, ServerMessage.FromJson("{\"opened\": {\"decoder\": \"DECODER_FUTURE\"}}").Opened.Decoder, "unknown name = 0");
        });
        Run("cue accepted", () =>
        {
            var c = Server("cue_accepted"); Eq(ServerKind.CueAccepted, c.Kind, "kind");
            Eq("boss", c.CueAccepted.EventId, "id"); Eq(2u, c.CueAccepted.QueuePosition, "qp");
            Eq(0u, Server("cue_accepted_next").CueAccepted.QueuePosition, "omitted default");
        });
        Run("shot started", () =>
        {
            var s = Server("shot_started").ShotStarted;
            Eq(Unicode, s.EventId, "unicode id"); Eq("boss,act2", string.Join(",", s.Tags), "tags"); Eq(4u, s.ShotIndex, "si");
            Eq(3u, s.NumChunks, "nc"); Eq(33u, s.NumFrames, "nf"); Eq(17u, s.PromptTokens, "pt"); Eq(2u, s.TruncatedTokens, "tt"); Eq(12.75, s.SetupMs, "setup");
        });
        Run("chunk shm", () =>
        {
            var c = Server("chunk_shm").Chunk;
            Eq(ulong.MaxValue, c.ChunkSeq, "seq"); Eq("boss", c.EventId, "id"); Eq(1u, c.ShotIndex, "si"); Eq(2u, c.ChunkIndex, "ci");
            Eq(21u, c.FirstFrame, "ff"); Eq(9007199254740993UL, c.StoryFrame, "sf"); Eq(12u, c.NumFrames, "nf"); Eq(832u, c.Width, "w");
            Eq(480u, c.Height, "h"); Eq(FrameFormat.Rgb8, c.FrameFormat, "fmt"); Eq(true, c.LastInShot, "last"); Eq(false, c.HasPixels, "pixels");
            Eq(2u, c.RingSlot.Slot, "slot"); Eq(7UL, c.RingSlot.Sequence, "rseq"); Eq(4160UL, c.RingSlot.Offset, "off"); Eq(14376960UL, c.RingSlot.Length, "len");
            Eq(1.5, c.Timing.CommitMs, "commit"); Eq(20.25, c.Timing.DenoiseMs, "denoise"); Eq(3.0, c.Timing.DecodeMs, "decode");
            Eq(0.125, c.Timing.QueueMs, "queue"); Eq(100.5, c.Timing.SinceShotStartMs, "since");
            var z = Server("chunk_shm_slot0").Chunk;
            True(z.RingSlot != null, "empty ringSlot object still selects the oneof"); Eq(0u, z.RingSlot.Slot, "slot0"); Eq(0u, z.ChunkIndex, "ci default");
            Eq(null, z.Timing, "no timing");
        });
        Run("shot finished", () =>
        {
            var f = Server("shot_finished").ShotFinished;
            Eq("boss", f.EventId, "id"); Eq(4u, f.ShotIndex, "si"); Eq(2u, f.Chunks, "chunks"); Eq(21u, f.Frames, "frames"); Eq(true, f.Cut, "cut");
        });
        Run("stats", () =>
        {
            var s = Server("stats").Stats;
            Eq(5UL, s.ChunksSent, "cs"); Eq(57UL, s.FramesSent, "fs"); Eq(33.5, s.ChunkMsMean, "mean"); Eq(120.25, s.Fps, "fps");
            Eq(1u, s.QueuedCues, "qc"); Eq(2u, s.ChunksInFlight, "cif"); Eq(true, s.Paused, "paused"); Eq(3u, s.Sessions, "sessions");
            Eq(8000000000UL, s.GpuMemoryUsedBytes, "gpu");
        });
        Run("errors and closed", () =>
        {
            var e = Server("error_fatal").Error; Eq(8u, e.Code, "code"); Eq("too many sessions", e.Message, "msg"); Eq(true, e.Fatal, "fatal");
            var s = Server("error_soft").Error; Eq(3u, s.Code, "code"); Eq("x", s.EventId, "id"); Eq(false, s.Fatal, "fatal");
            Eq("client", Server("closed").Closed.Reason, "reason");
        });
        Run("takes", () =>
        {
            var t = Server("take_started"); Eq(ServerKind.TakeStarted, t.Kind, "kind");
            Eq("boss-fight", t.TakeStarted.Name, "name"); Eq("/srv/takes/boss-fight.mp4", t.TakeStarted.Path, "path");
            var s = Server("take_saved"); Eq(ServerKind.TakeSaved, s.Kind, "kind");
            Eq("boss-fight", s.TakeSaved.Name, "name"); Eq("/srv/takes/boss-fight.mp4", s.TakeSaved.Path, "path");
            Eq(45u, s.TakeSaved.Frames, "frames"); Eq(6000000000UL, s.TakeSaved.Bytes, "bytes above 2^32"); Eq(2.8125, s.TakeSaved.DurationS, "duration");
            Eq(TakeQuality.Unspecified, t.TakeStarted.Quality, "live take: no quality from an older server");
            Eq("", t.TakeStarted.FullPath, "live take: no full path"); Eq("", s.TakeSaved.FullPath, "saved: no full path"); Eq(0UL, s.TakeSaved.FullBytes, "no full bytes");
        });
        Run("full takes", () =>
        {
            var t = Server("take_started_full"); Eq(ServerKind.TakeStarted, t.Kind, "kind");
            Eq("boss-fight", t.TakeStarted.Name, "name"); Eq("/srv/takes/boss-fight.mp4", t.TakeStarted.Path, "path");
            Eq(TakeQuality.Full, t.TakeStarted.Quality, "quality"); Eq("TAKE_QUALITY_FULL", ProtoEnums.Name(t.TakeStarted.Quality), "quality name");
            Eq("/srv/takes/boss-fight.full.mp4", t.TakeStarted.FullPath, "full path");
            var s = Server("take_saved_full"); Eq(ServerKind.TakeSaved, s.Kind, "kind");
            Eq("/srv/takes/boss-fight.mp4", s.TakeSaved.Path, "path"); Eq(45u, s.TakeSaved.Frames, "frames"); Eq(6000000000UL, s.TakeSaved.Bytes, "bytes");
            Eq("/srv/takes/boss-fight.full.mp4", s.TakeSaved.FullPath, "full path"); Eq(ulong.MaxValue, s.TakeSaved.FullBytes, "full bytes 2^64-1");
            var proto = ServerMessage.FromJson("{\"take_saved\": {\"full_path\": \"/a.full.mp4\", \"full_bytes\": 5}}").TakeSaved;
            Eq("/a.full.mp4", proto.FullPath, "proto field name"); Eq(5UL, proto.FullBytes, "uint64 as a number");
        });
        Run("snapshot part", () =>
        {
            var m = Server("snapshot"); Eq(ServerKind.Snapshot, m.Kind, "kind");
            var p = m.Snapshot;
            Eq(259, p.Data.Length, "data length");
            for (int i = 0; i < 256; i++) if (p.Data[i] != (byte)i) throw new Exception("byte " + i + " is " + p.Data[i]);
            Eq((byte)0xFF, p.Data[256], "0xFF"); Eq((byte)0x00, p.Data[257], "0x00"); Eq((byte)0xFB, p.Data[258], "0xFB");
            Eq(5000000000UL, p.TotalBytes, "total above 2^32"); Eq(1u, p.Index, "index"); Eq(3u, p.Count, "count"); Eq(4u, p.NextShotIndex, "next shot");
            // proto3 JSON bytes: URL-safe and unpadded base64 read too; anything else is an error
            var url = ServerMessage.FromJson("{\"snapshot\": {\"data\": \"-_8\", \"total_bytes\": 2}}").Snapshot;
            Eq("fb,ff", string.Join(",", url.Data.Select(b => b.ToString("x2"))), "url-safe, unpadded"); Eq(2UL, url.TotalBytes, "proto name");
            Eq("fb,ff", string.Join(",", ServerMessage.FromJson("{\"snapshot\": {\"data\": \"+/8=\"}}").Snapshot.Data.Select(b => b.ToString("x2"))), "standard");
            Eq(null, ServerMessage.FromJson("{\"snapshot\": {}}").Snapshot.Data, "no data");
            foreach (var bad in new[] { "\"a\"", "\"a$==\"", "\"abcde\"", "3" })
                Throws<JsonException>(() => ServerMessage.FromJson("{\"snapshot\": {\"data\": " + bad + "}}"), "bad base64 " + bad);
        });
        Run("restored", () =>
        {
            var m = Server("restored"); Eq(ServerKind.Restored, m.Kind, "kind");
            Eq(3u, m.Restored.NextShotIndex, "next shot"); Eq(9007199254740993UL, m.Restored.StoryFrames, "story frames above 2^53");
        });
        Run("cue log", () =>
        {
            var m = Server("cue_log"); Eq(ServerKind.CueLog, m.Kind, "kind");
            var log = m.CueLog;
            Eq(Unicode, log.GlobalCaption, "caption"); Eq(ulong.MaxValue, log.Seed, "seed"); Eq(FrameDecoder.Tae, log.Decoder, "decoder");
            Eq(2u, log.FirstShotIndex, "first shot"); Eq(4u, log.NextShot, "next shot"); Eq(1u, log.DroppedShots, "dropped");
            Eq(2, log.Entries.Count, "entries");
            var a = log.Entries[0];
            Eq("walk", a.Cue.EventId, "id"); Eq("The keeper climbs.", a.Cue.Prompt, "prompt"); Eq("a,b", string.Join(",", a.Cue.Tags), "tags");
            Eq(3u, a.Cue.NumChunks, "planned"); Eq(CueMode.Wait, a.Cue.Mode, "mode"); Eq(0u, a.Cue.AtChunk, "at chunk");
            Eq(2u, a.ShotIndex, "shot"); Eq(1u, a.Chunks, "chunks made"); Eq(true, a.Cut, "cut"); Eq(true, a.Finished, "finished");
            var b = log.Entries[1];
            Eq("boom", b.Cue.EventId, "id"); Eq("A wave \U0001F30A hits.", b.Cue.Prompt, "prompt"); Eq(CueMode.Cut, b.Cue.Mode, "mode");
            Eq(1u, b.Cue.AtChunk, "at chunk"); Eq(3u, b.ShotIndex, "shot"); Eq(1u, b.Chunks, "chunks"); Eq(false, b.Cut, "cut"); Eq(false, b.Finished, "in progress");
            Eq(0, ServerMessage.FromJson("{\"cue_log\": {\"entries\": []}}").CueLog.Entries.Count, "proto name, no entries");
            Throws<JsonException>(() => ServerMessage.FromJson("{\"cueLog\": {\"entries\": {}}}"), "entries must be an array");
        });
        Run("unknown fields ignored", () =>
        {
            var m = Server("unknown_fields"); Eq(ServerKind.CueAccepted, m.Kind, "kind"); Eq("f", m.CueAccepted.EventId, "id"); Eq(1u, m.CueAccepted.QueuePosition, "qp");
        });
        Run("missing or double kind is an error", () =>
        {
            Throws<JsonException>(() => ServerMessage.FromJson("{}"), "empty");
            Throws<JsonException>(() => ServerMessage.FromJson("{\"future\": {}}"), "only unknown");
            Throws<JsonException>(() => ServerMessage.FromJson("[]"), "array");
            Throws<JsonException>(() => ServerMessage.FromJson("{\"closed\": {}, \"stats\": {}}"), "two kinds");
            Throws<JsonException>(() => ServerMessage.FromJson("{\"stats\": {\"paused\": 1}}"), "wrong type");
            Throws<JsonException>(() => ServerMessage.FromJson("{\"chunk\": {\"chunkSeq\": \"-1\"}}"), "negative uint64");
            Throws<JsonException>(() => ServerMessage.FromJson("{\"chunk\": {\"numFrames\": 4294967296}}"), "uint32 overflow");
        });
        Run("server json roundtrip", () =>
        {
            foreach (var f in Directory.GetFiles(Path.Combine(dir, "server"), "*.json"))
            {
                if (f.EndsWith("unknown_fields.json")) continue;
                string src = File.ReadAllText(f, Encoding.UTF8);
                Eq(Json.Write(Json.Parse(src)), ServerMessage.FromJson(src).ToJson(), "re-encode " + Path.GetFileName(f));
            }
        });
    }

    // tests/wire_goldens.py's SNAPSHOT_DATA: every byte value, then 0xFF 0x00 0xFB.
    static byte[] SnapshotData()
    {
        var d = new byte[259];
        for (int i = 0; i < 256; i++) d[i] = (byte)i;
        d[256] = 0xFF; d[257] = 0x00; d[258] = 0xFB;
        return d;
    }

    static Dictionary<string, ClientMessage> ClientMessages()
    {
        var cue = new Cue { EventId = "boss", Prompt = "A dragon \U0001F409 lands.", NumChunks = 2, Mode = CueMode.Cut };
        cue.Tags.Add("a"); cue.Tags.Add("b");
        return new Dictionary<string, ClientMessage>
        {
            { "open", ClientMessage.Open(new OpenSession { ClientName = "unity/Test", GlobalCaption = Unicode, Seed = ulong.MaxValue,
                                                           FrameFormat = FrameFormat.Rgba8, Transport = Transport.SharedMemory, MaxChunksInFlight = 3 }) },
            { "open_defaults", ClientMessage.Open(new OpenSession()) },
            { "open_decoder", ClientMessage.Open(new OpenSession { ClientName = "unity/Test", Seed = 7, FrameFormat = FrameFormat.Rgba8,
                                                                   Transport = Transport.Inline, MaxChunksInFlight = 2, Decoder = FrameDecoder.Tae }) },
            { "cue", ClientMessage.CueMessage(cue) },
            { "cue_wait", ClientMessage.CueMessage(new Cue { Prompt = "p", Mode = CueMode.Wait }) },
            { "ack", ClientMessage.AckMessage(9007199254740993UL) },
            { "pause", ClientMessage.Pause() },
            { "resume", ClientMessage.Resume() },
            { "close", ClientMessage.Close() },
            { "start_take", ClientMessage.StartTakeMessage("boss-fight") },
            { "start_take_default", ClientMessage.StartTakeMessage() },
            { "start_take_full", ClientMessage.StartTakeMessage("boss-fight", TakeQuality.Full) },
            { "stop_take", ClientMessage.StopTakeMessage() },
            { "open_snapshot", ClientMessage.Open(new OpenSession { ClientName = "unity/Test", FrameFormat = FrameFormat.Rgba8, Transport = Transport.Inline,
                                                                    MaxChunksInFlight = 2, Snapshot = new SnapshotPart { Data = SnapshotData(), TotalBytes = 70000 } }) },
            { "open_fork", ClientMessage.Open(new OpenSession { ClientName = "unity/Test", Fork = new Fork { SessionId = "s-1", WaitForBoundary = true } }) },
            { "cue_at_chunk", ClientMessage.CueMessage(new Cue { EventId = "boom", Prompt = "A wave hits.", NumChunks = 2, Mode = CueMode.Cut, AtChunk = 3 }) },
            { "snapshot_request", ClientMessage.SnapshotMessage(true) },
            { "snapshot_part", ClientMessage.SnapshotPartMessage(new SnapshotPart { Data = SnapshotData(), TotalBytes = 70000, Index = 2 }) },
            { "cue_log_request", ClientMessage.CueLogMessage(5) },
        };
    }

    static void GoldenClientTests()
    {
        var outDir = Path.Combine(dir, "csharp_client");
        Directory.CreateDirectory(outDir);
        foreach (var kv in ClientMessages())
        {
            var name = kv.Key; var msg = kv.Value;
            Run("client " + name, () =>
            {
                string mine = msg.ToJson();
                File.WriteAllBytes(Path.Combine(outDir, name + ".json"), new UTF8Encoding(false).GetBytes(mine));
                string golden = Text(Path.Combine("client", name + ".json"));
                Eq(Json.Write(Json.Parse(golden)), mine, "same JSON as json_format.MessageToJson");
                var back = ClientMessage.FromJson(golden);
                Eq(msg.Kind, back.Kind, "kind");
                Eq(mine, back.ToJson(), "parse + re-encode");
            });
        }
        Run("client message errors", () =>
        {
            Throws<JsonException>(() => ClientMessage.FromJson("{}"), "no kind");
            Throws<JsonException>(() => ClientMessage.FromJson("{\"open\": {}, \"close\": {}}"), "two kinds");
            Throws<JsonException>(() => ClientMessage.FromJson("{\"startTake\": {}, \"stop_take\": {}}"), "two kinds, either spelling");
            var proto = ClientMessage.FromJson("{\"start_take\": {\"name\": \"t1\"}}");
            Eq(ClientKind.StartTake, proto.Kind, "proto field name"); Eq("t1", proto.AsStartTake.Name, "name");
            Eq(TakeQuality.Unspecified, proto.AsStartTake.Quality, "no quality: Unspecified (live)");
            Eq(TakeQuality.Full, ClientMessage.FromJson("{\"startTake\": {\"quality\": 2}}").AsStartTake.Quality, "quality as a number");
            Eq(FrameDecoder.Tae, ClientMessage.FromJson("{\"open\": {\"decoder\": \"DECODER_TAE\"}}").AsOpen.Decoder, "open decoder");
            Eq("{\"startTake\":{\"quality\":\"TAKE_QUALITY_LIVE\"}}", ClientMessage.StartTakeMessage("", TakeQuality.Live).ToJson(), "an explicit LIVE is written");
            Eq("{\"snapshot\":{}}", ClientMessage.SnapshotMessage(false).ToJson(), "no wait: the proto default, left out");
            Eq("{\"cueLog\":{}}", ClientMessage.CueLogMessage().ToJson(), "the whole log: from shot 0");
            var part = ClientMessage.FromJson("{\"snapshot_part\": {\"data\": \"AAH/\", \"index\": 4}}");
            Eq(ClientKind.SnapshotPart, part.Kind, "proto name"); Eq("0,1,255", string.Join(",", part.AsSnapshotPart.Data), "bytes"); Eq(4u, part.AsSnapshotPart.Index, "index");
            Eq(true, ClientMessage.FromJson("{\"snapshot\": {\"wait_for_boundary\": true}}").AsSnapshot.WaitForBoundary, "wait");
            Eq(7u, ClientMessage.FromJson("{\"cue_log\": {\"from_shot\": \"7\"}}").AsCueLog.FromShot, "from shot as a string");
            var open = ClientMessage.FromJson("{\"open\": {\"fork\": {\"session_id\": \"s-9\"}, \"snapshot\": {\"total_bytes\": \"5\"}}}").AsOpen;
            Eq("s-9", open.Fork.SessionId, "fork"); Eq(false, open.Fork.WaitForBoundary, "no wait"); Eq(5UL, open.Snapshot.TotalBytes, "snapshot total");
            Eq(null, ClientMessage.FromJson("{\"open\": {}}").AsOpen.Snapshot, "no snapshot: null");
            Eq(2u, ClientMessage.FromJson("{\"cue\": {\"at_chunk\": 2}}").AsCue.AtChunk, "at_chunk");
        });
    }

    static void FieldListTests()
    {
        var mine = new Dictionary<string, string[]>
        {
            { "ClientMessage", ClientMessage.ProtoFields }, { "OpenSession", OpenSession.ProtoFields }, { "Cue", Cue.ProtoFields },
            { "Ack", Ack.ProtoFields }, { "Pause", Empty.ProtoFields }, { "Resume", Empty.ProtoFields }, { "Close", Empty.ProtoFields },
            { "StartTake", StartTake.ProtoFields }, { "StopTake", Empty.ProtoFields },
            { "ServerMessage", ServerMessage.ProtoFields }, { "SessionOpened", SessionOpened.ProtoFields }, { "RingLayout", RingLayout.ProtoFields },
            { "CueAccepted", CueAccepted.ProtoFields }, { "ShotStarted", ShotStarted.ProtoFields }, { "FrameChunk", FrameChunk.ProtoFields },
            { "RingSlot", RingSlot.ProtoFields }, { "ChunkTiming", ChunkTiming.ProtoFields }, { "ShotFinished", ShotFinished.ProtoFields },
            { "Stats", Stats.ProtoFields }, { "Error", ServerError.ProtoFields }, { "SessionClosed", SessionClosed.ProtoFields },
            { "TakeStarted", TakeStarted.ProtoFields }, { "TakeSaved", TakeSaved.ProtoFields },
            { "SnapshotRequest", SnapshotRequest.ProtoFields }, { "SnapshotPart", SnapshotPart.ProtoFields }, { "Fork", Fork.ProtoFields },
            { "CueLogRequest", CueLogRequest.ProtoFields }, { "SnapshotRestored", SnapshotRestored.ProtoFields }, { "CueLog", CueLog.ProtoFields },
            { "CueLogEntry", CueLogEntry.ProtoFields },
            { "enum:FrameFormat", ProtoEnums.AllFrameFormatNames.ToArray() }, { "enum:Transport", ProtoEnums.AllTransportNames.ToArray() },
            { "enum:CueMode", ProtoEnums.AllCueModeNames.ToArray() }, { "enum:Decoder", ProtoEnums.AllDecoderNames.ToArray() },
            { "enum:TakeQuality", ProtoEnums.AllTakeQualityNames.ToArray() },
        };
        var seen = new HashSet<string>();
        foreach (var line in File.ReadAllLines(Path.Combine(dir, "fields.txt")))
        {
            if (line.Trim().Length == 0) continue;
            int sp = line.IndexOf(' ');
            string name = sp < 0 ? line : line.Substring(0, sp);
            string fields = sp < 0 ? "" : line.Substring(sp + 1);
            seen.Add(name);
            Run("proto fields " + name, () =>
            {
                True(mine.ContainsKey(name), "the proto message " + name + " is not modeled in C#");
                Eq(fields, string.Join(",", mine[name]), "C# field list of " + name + " (update Messages.cs when the proto changes)");
            });
        }
        Run("proto field lists complete", () => Eq("", string.Join(",", mine.Keys.Where(k => !seen.Contains(k))), "modeled but not in fields.txt"));
    }

    static void ChunkFrameTests()
    {
        foreach (var fmt in new[] { "rgb", "rgba" })
        {
            Run("ssc1 " + fmt, () =>
            {
                byte[] frame = File.ReadAllBytes(Path.Combine(dir, "server", "chunk_" + fmt + ".bin"));
                var c = ChunkFrame.Decode(frame, 0, frame.Length);
                int ch = fmt == "rgb" ? 3 : 4;
                Eq(fmt == "rgb" ? FrameFormat.Rgb8 : FrameFormat.Rgba8, c.FrameFormat, "fmt");
                Eq(3UL, c.ChunkSeq, "seq"); Eq("e\u00e9", c.EventId, "id"); Eq(1u, c.ShotIndex, "si"); Eq(0u, c.ChunkIndex, "ci"); Eq(9UL, c.StoryFrame, "sf");
                Eq(2u, c.NumFrames, "nf"); Eq(5u, c.Width, "w"); Eq(3u, c.Height, "h"); Eq(false, c.LastInShot, "last"); Eq(2.5, c.Timing.DenoiseMs, "timing");
                Eq(2 * 3 * 5 * ch, c.Pixels.Count, "pixel count");
                True(ReferenceEquals(frame, c.Pixels.Array), "pixels are not copied");
                for (int i = 0; i < c.Pixels.Count; i++) if (frame[c.Pixels.Offset + i] != (byte)((i * 7 + 3) % 256)) throw new Exception("pixel " + i);
                var again = Encode(c, c.Pixels);
                var c2 = ChunkFrame.Decode(again, 0, again.Length);
                Eq(c.ToJson(), c2.ToJson(), "encode/decode");
                // malformed frames
                Throws<FormatException>(() => ChunkFrame.Decode(frame, 0, frame.Length - 1), "short pixels");
                var longer = new byte[frame.Length + 1]; Buffer.BlockCopy(frame, 0, longer, 0, frame.Length);
                Throws<FormatException>(() => ChunkFrame.Decode(longer, 0, longer.Length), "extra pixels");
                Throws<FormatException>(() => ChunkFrame.Decode(frame, 0, 7), "short header");
                var badMagic = (byte[])frame.Clone(); badMagic[3] = (byte)'2';
                True(!ChunkFrame.HasKnownMagic(badMagic, 0, badMagic.Length), "unknown magic");
                Throws<FormatException>(() => ChunkFrame.Decode(badMagic, 0, badMagic.Length), "bad magic");
                var badLen = (byte[])frame.Clone(); badLen[7] = 0x7f;
                Throws<FormatException>(() => ChunkFrame.Decode(badLen, 0, badLen.Length), "header length too big");
                var badJson = (byte[])frame.Clone(); badJson[8] = (byte)'[';
                Throws<FormatException>(() => ChunkFrame.Decode(badJson, 0, badJson.Length), "bad JSON header");
            });
        }
    }

    // An SSC1 frame as the gateway writes it: the chunk's JSON without pixels, then the pixels.
    static byte[] Encode(FrameChunk chunk, ArraySegment<byte> pixels)
    {
        var saved = chunk.Pixels;
        chunk.Pixels = default(ArraySegment<byte>);
        byte[] header = new UTF8Encoding(false, true).GetBytes(chunk.ToJson());
        chunk.Pixels = saved;
        var result = new byte[ChunkFrame.HeaderSize + header.Length + pixels.Count];
        BitConverter.GetBytes(ChunkFrame.Magic).CopyTo(result, 0);
        BitConverter.GetBytes((uint)header.Length).CopyTo(result, 4);
        Buffer.BlockCopy(header, 0, result, ChunkFrame.HeaderSize, header.Length);
        Buffer.BlockCopy(pixels.Array, pixels.Offset, result, ChunkFrame.HeaderSize + header.Length, pixels.Count);
        return result;
    }

    static int Refused(Uri gateway, string token)
    {
        var wrongPath = new UriBuilder(gateway) { Path = "/v1/elsewhere" }.Uri;
        foreach (var attempt in new[] { Tuple.Create(gateway, "not-" + token), Tuple.Create(wrongPath, token) })
        {
            try
            {
                ShotStreamConnection.ConnectAsync(attempt.Item1, attempt.Item2).GetAwaiter().GetResult().Dispose();
                Console.WriteLine("CONNECTED " + attempt.Item1);
            }
            catch (ShotStreamException e) { Console.WriteLine("REFUSED " + e.HttpStatus + " " + e.Transient + " " + e.Message.Replace('\n', ' ')); }
        }
        return 0;
    }

    static SnapshotPart Part(uint index, uint count, ulong total, params byte[] data)
    {
        return new SnapshotPart { Index = index, Count = count, TotalBytes = total, Data = data, NextShotIndex = 2 };
    }

    static void SnapshotTests()
    {
        Run("snapshot split for upload", () =>
        {
            var data = new byte[70000];
            for (int i = 0; i < data.Length; i++) data[i] = (byte)(i * 31 + 7);
            var parts = SnapshotParts.Split(data).ToList();
            Eq("32768,32768,4464", string.Join(",", parts.Select(p => p.Data.Length)), "32 KiB parts");
            Eq("0,1,2", string.Join(",", parts.Select(p => p.Index)), "indexes");
            True(parts.All(p => p.TotalBytes == 70000 && p.Count == 0), "total in every part, count left 0");
            True(parts.SelectMany(p => p.Data).SequenceEqual(data), "the bytes, in order");
            // what the gateway would get: each part within the server's 64 KiB message limit
            foreach (var p in parts) True(Encoding.UTF8.GetByteCount(ClientMessage.SnapshotPartMessage(p).ToJson()) < 65536, "part message under 64 KiB");
            True(Encoding.UTF8.GetByteCount(ClientMessage.Open(new OpenSession { GlobalCaption = new string('c', 10000), Snapshot = parts[0] }).ToJson()) < 65536,
                 "open with the first part and a long caption under 64 KiB");
            Eq("3,3,1", string.Join(",", SnapshotParts.Split(new byte[] { 1, 2, 3, 4, 5, 6, 7 }, 3).Select(p => p.Data.Length)), "small parts");
            Eq(1, SnapshotParts.Split(new byte[] { 9 }).Count(), "one byte, one part");
            Throws<ArgumentException>(() => SnapshotParts.Split(new byte[0]), "empty");
            Throws<ArgumentNullException>(() => SnapshotParts.Split(null), "null");
            Throws<ArgumentOutOfRangeException>(() => SnapshotParts.Split(data, 32769), "over 32 KiB");
            Throws<ArgumentOutOfRangeException>(() => SnapshotParts.Split(data, 0), "zero");
        });
        Run("snapshot assembled from parts", () =>
        {
            var a = new SnapshotAssembler();
            Eq(null, a.Add(Part(0, 3, 7, 1, 2, 3)), "part 0 of 3");
            True(a.InProgress && a.ReceivedBytes == 3, "in progress");
            Eq(null, a.Add(Part(1, 3, 7, 4, 5)), "part 1");
            var whole = a.Add(Part(2, 3, 7, 6, 7));
            Eq("1,2,3,4,5,6,7", string.Join(",", whole), "whole");
            True(!a.InProgress, "done");
            Eq("9", string.Join(",", a.Add(Part(0, 1, 1, 9))), "then another snapshot, one part");
            Eq("8,8", string.Join(",", a.Add(Part(0, 0, 2, 8, 8))), "no count (a client's parts)");
        });
        Run("snapshot parts that break the rules", () =>
        {
            Func<SnapshotAssembler, SnapshotPart[], string> fails = (a, parts) =>
            {
                try { foreach (var p in parts) a.Add(p); }
                catch (InvalidDataException e) { True(!a.InProgress, "dropped after " + e.Message); return e.Message; }
                throw new Exception("accepted " + parts.Length + " parts");
            };
            var asm = new SnapshotAssembler(maxBytes: 100);
            True(fails(asm, new[] { Part(0, 1, 101, 1) }).Contains("more than this client takes (100 bytes"), "over the client's maximum");
            True(fails(asm, new[] { Part(0, 2, 4, 1, 2), Part(2, 2, 4, 3, 4) }).Contains("part 2 came where part 1 was due"), "out of order");
            True(fails(asm, new[] { Part(1, 2, 4, 1, 2) }).Contains("without its part 0"), "no part 0");
            True(fails(asm, new[] { Part(0, 2, 4, 1, 2), Part(0, 2, 4, 1, 2) }).Contains("before the one in progress was complete"), "restarted");
            True(fails(asm, new[] { Part(0, 2, 4, 1, 2), Part(1, 2, 5, 3, 4) }).Contains("announces 5 bytes in all"), "total changed");
            True(fails(asm, new[] { Part(0, 2, 4, 1, 2), Part(1, 2, 4, 3, 4, 5) }).Contains("goes past the 4 bytes"), "more than announced");
            True(fails(asm, new[] { Part(0, 2, 4, 1, 2), Part(1, 2, 4, 3) }).Contains("left it short"), "last part short");
            True(fails(asm, new[] { Part(0, 3, 2, 1, 2) }).Contains("after part 0 of 3"), "complete before its last part");
            True(fails(asm, new[] { Part(0, 2, 4, 1), Part(1, 3, 4, 2) }).Contains("says 3 parts"), "count changed");
            True(fails(asm, new[] { Part(0, 0, 0) }).Contains("a total of 0 bytes"), "empty");
            Eq("5,6", string.Join(",", asm.Add(Part(0, 1, 2, 5, 6))), "usable again after a failure");
            Throws<ArgumentOutOfRangeException>(() => new SnapshotAssembler(0), "max 0");
            Throws<ArgumentOutOfRangeException>(() => new SnapshotAssembler(1L << 31), "max past an array");
            Eq(256L << 20, new SnapshotAssembler().MaxBytes, "256 MiB by default");
        });
        Run("cue log pages merged", () =>
        {
            Func<uint, uint, CueLogEntry> entry = (shot, chunks) => new CueLogEntry { Cue = new Cue { Prompt = "p" + shot }, ShotIndex = shot, Chunks = chunks, Finished = true };
            var c = new CueLogCollector();
            var first = new CueLog { GlobalCaption = "cap", Seed = 7, Decoder = FrameDecoder.Wan, FirstShotIndex = 1, DroppedShots = 0, NextShot = 3 };
            first.Entries.Add(entry(1, 2)); first.Entries.Add(entry(2, 7));
            Eq((uint?)3, c.Add(first), "ask from shot 3");
            var second = new CueLog { GlobalCaption = "cap", Seed = 7, NextShot = 0 };
            second.Entries.Add(entry(3, 1));
            Eq((uint?)null, c.Add(second), "done");
            Eq("cap 7 DECODER_WAN 1 0", c.Log.GlobalCaption + " " + c.Log.Seed + " " + ProtoEnums.Name(c.Log.Decoder) + " " + c.Log.FirstShotIndex + " " + c.Log.NextShot, "header");
            Eq("p1:2,p2:7,p3:1", string.Join(",", c.Log.Entries.Select(e => e.Cue.Prompt + ":" + e.Chunks)), "entries in order");
            var stuck = new CueLog { NextShot = 2 };
            stuck.Entries.Add(entry(2, 1));
            Throws<InvalidDataException>(() => new CueLogCollector().Add(stuck), "a page that does not move forward");
            Throws<InvalidDataException>(() => new CueLogCollector().Add(new CueLog { NextShot = 4 }), "an empty page that asks for more");
            var back = new CueLogCollector();
            var p1 = new CueLog { NextShot = 5 }; p1.Entries.Add(entry(4, 1));
            back.Add(p1);
            var p2 = new CueLog(); p2.Entries.Add(entry(3, 1));
            Throws<InvalidDataException>(() => back.Add(p2), "entries going back");
            Eq((uint?)null, new CueLogCollector().Add(new CueLog()), "an empty log");
        });
    }

    static void PolicyTests()
    {
        Run("backoff", () =>
        {
            var p = new ReconnectPolicy { InitialDelay = TimeSpan.FromMilliseconds(100), MaxDelay = TimeSpan.FromSeconds(1), Multiplier = 2, MaxRetries = 3 };
            Eq(100.0, p.DelayFor(0).TotalMilliseconds, "0"); Eq(400.0, p.DelayFor(2).TotalMilliseconds, "2");
            Eq(1000.0, p.DelayFor(5).TotalMilliseconds, "capped"); Eq(1000.0, p.DelayFor(100000).TotalMilliseconds, "huge");
            Eq(true, p.ShouldRetry(2), "retry 2"); Eq(false, p.ShouldRetry(3), "retry 3");
            var delays = new List<double>();
            int calls = 0;
            Func<TimeSpan, CancellationToken, Task> fake = (d, ct) => { delays.Add(d.TotalMilliseconds); return Task.FromResult(0); };
            int r = p.RunAsync(ct => { calls++; if (calls < 3) throw new IOException("down"); return Task.FromResult(42); }, default(CancellationToken), fake)
                     .GetAwaiter().GetResult();
            Eq(42, r, "result"); Eq("100,200", string.Join(",", delays), "delays");
            calls = 0;
            Throws<IOException>(() => p.RunAsync<int>(ct => { calls++; throw new IOException("down"); }, default(CancellationToken), fake).GetAwaiter().GetResult(), "gives up");
            Eq(4, calls, "1 + MaxRetries attempts");
            calls = 0;
            Throws<ShotStreamException>(() => p.RunAsync<int>(ct => { calls++; throw new ShotStreamException(8, "full"); }, default(CancellationToken), fake).GetAwaiter().GetResult(), "server refusal");
            Eq(1, calls, "no retry on a server refusal");
        });
        Run("only transient failures are retried", () =>
        {
            var p = new ReconnectPolicy { MaxRetries = 3 };
            Func<TimeSpan, CancellationToken, Task> noDelay = (d, ct) => Task.FromResult(0);
            foreach (var e in new Exception[] { new IOException("reset"), new ShotStreamException(0, "lost", null, transient: true),
                                                new System.Net.WebSockets.WebSocketException("aborted"), new TimeoutException() })
            {
                True(ReconnectPolicy.IsTransient(e), e.GetType().Name + " is transient");
                int calls = 0;
                Throws<Exception>(() => p.RunAsync<int>(ct => { calls++; throw e; }, default(CancellationToken), noDelay).GetAwaiter().GetResult(), "gives up");
                Eq(4, calls, e.GetType().Name + ": retried");
            }
            foreach (var e in new Exception[] { new InvalidOperationException("a bug"), new NullReferenceException(), new ArgumentException("bad"),
                                                new ShotStreamException(0, "refused handshake", null, transient: false, httpStatus: 401),
                                                new ShotStreamException(8, "the server is full") })
            {
                True(!ReconnectPolicy.IsTransient(e), e.GetType().Name + " " + e.Message + " is not transient");
                int calls = 0;
                Throws<Exception>(() => p.RunAsync<int>(ct => { calls++; throw e; }, default(CancellationToken), noDelay).GetAwaiter().GetResult(), "fails");
                Eq(1, calls, e.Message + ": not retried");
            }
        });
        Run("connect refused is a transient ShotStreamException", () =>
        {
            try { ShotStreamConnection.ConnectAsync(new Uri("ws://127.0.0.1:1/v1/direct")).GetAwaiter().GetResult(); throw new Exception("connected"); }
            catch (ShotStreamException e) { True(e.Transient && e.HttpStatus == 0 && e.Message.Contains("could not connect"), e.Message); }
        });
    }

    // The story tests/test_unity_core.py also plays through the Python SDK (same seed, one credit): "walk"
    // (3 chunks) is cut by "boom" (2 chunks, CUT) sent when walk starts, so the cut lands after walk's first
    // chunk whatever the timing (walk's second chunk needs the first one's ack). With a take (a name, or ""
    // for the server's default) the frames are also recorded into an MP4 on the server: start_take before the
    // first cue; stop_take after the last shot, or (stopTake false) close, which must report take_saved first.
    static async Task<int> Live(Uri uri, Transport transport, string take, bool stopTake)
    {
        using (var conn = await ShotStreamConnection.ConnectAsync(uri, Environment.GetEnvironmentVariable("SHOTSTREAM_TOKEN")))
        {
            var opened = await conn.OpenAsync("A lighthouse on a stormy coast.", 5, FrameFormat.Rgba8, transport, 1, "unity/CoreTests");
            Console.WriteLine("OPENED " + opened.SessionId + " " + opened.Width + "x" + opened.Height + " " + ProtoEnums.Name(opened.FrameFormat) + " " + ProtoEnums.Name(opened.Transport));
            if (opened.Transport != transport) throw new Exception("asked for " + transport + ", the server chose " + opened.Transport);
            RingReader ring = null;
            if (transport == Transport.SharedMemory)
            {
                var r = opened.Ring ?? throw new Exception("a shared-memory session without a ring layout");
                ring = new RingReader(r.Path, (int)r.SlotCount, (long)r.SlotBytes, (int)r.HeaderBytes, (int)r.SlotHeaderBytes);
            }
            try
            {
                if (take != null) await conn.StartTakeAsync(take);
                await conn.SendCueAsync("walk", "The keeper climbs the stairs.", 3, CueMode.Wait);
                int finished = 0, chunks = 0; long frames = 0; bool cutSent = false, saved = take == null;
                byte[] copy = new byte[0];
                while (true)
                {
                    var m = await conn.ReceiveAsync();
                    if (m == null) break;
                    switch (m.Kind)
                    {
                        case ServerKind.ShotStarted:
                            if (!cutSent) { await conn.SendCueAsync("boom", "A wave hits the rocks.", 2, CueMode.Cut); cutSent = true; }
                            break;
                        case ServerKind.Chunk:
                            var c = m.Chunk;
                            ArraySegment<byte> px = ring == null ? c.Pixels : ReadRing(ring, c, ref copy);
                            if (px.Array == null || px.Count != c.ExpectedPixelBytes) throw new Exception("chunk " + c.ChunkSeq + " without its pixels");
                            if ((ring == null) != c.HasPixels || (ring == null) == (c.RingSlot != null)) throw new Exception("chunk " + c.ChunkSeq + " used the other transport");
                            Console.WriteLine("CHUNK " + c.ChunkSeq + " " + c.EventId + " " + Crc32(px.Array, px.Offset, px.Count) + " " + px.Count);
                            chunks++; frames += c.NumFrames;
                            await conn.AckAsync(c.ChunkSeq);
                            break;
                        case ServerKind.ShotFinished:
                            var f = m.ShotFinished;
                            Console.WriteLine("FINISHED " + f.EventId + " " + f.Chunks + " " + (f.Cut ? "cut" : "full"));
                            if (++finished == 2)
                            {
                                if (take != null && stopTake) await conn.StopTakeAsync();
                                else await conn.CloseAsync();
                            }
                            break;
                        case ServerKind.TakeStarted:
                            Console.WriteLine("TAKE_STARTED " + m.TakeStarted.Name + " " + m.TakeStarted.Path);
                            break;
                        case ServerKind.TakeSaved:
                            var t = m.TakeSaved;
                            Console.WriteLine("TAKE_SAVED " + t.Name + " " + t.Path + " " + t.Frames + " " + t.Bytes + " " + t.DurationS.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
                            if (t.Frames != frames) throw new Exception("the take has " + t.Frames + " frames, the session sent " + frames);
                            saved = true;
                            if (stopTake) await conn.CloseAsync();
                            break;
                        case ServerKind.Closed:
                            Console.WriteLine("CLOSED " + m.Closed.Reason);
                            if (!saved) throw new Exception("closed before take_saved");
                            break;
                        case ServerKind.Error:
                            Console.WriteLine("ERROR " + m.Error.Code + " " + m.Error.Message);
                            return 1;
                    }
                }
                return finished == 2 && chunks == 3 && saved ? 0 : 1;
            }
            finally { if (ring != null) ring.Dispose(); }
        }
    }

    // The core alone, issue 12 (tests/test_unity_core.py checks the chunks against the Python SDK continuing the same file): A plays
    // "walk" (1 chunk), asks for the snapshot when walk starts (waitForBoundary: taken at its end) and cues "tail" (2 chunks) right after;
    // the parts are put together with a SnapshotAssembler and written to FILE. B opens from FILE in 1 KiB parts and cues tail.
    static async Task<int> LiveSnapshot(Uri uri, string file)
    {
        const string Caption = "Sea.", Walk = "The keeper climbs the stairs.", Tail = "A wave hits the rocks.";
        using (var a = await ShotStreamConnection.ConnectAsync(uri))
        {
            await a.OpenAsync(Caption, 3, FrameFormat.Rgba8, Transport.Inline, 1, "unity/CoreTests");
            await a.SendCueAsync("walk", Walk, 1, CueMode.Wait);
            var assembler = new SnapshotAssembler();
            int finished = 0, parts = 0;
            byte[] snapshot = null;
            bool asked = false;
            while (finished < 2 || snapshot == null)
            {
                var m = await a.ReceiveAsync() ?? throw new Exception("A ended early");
                switch (m.Kind)
                {
                    case ServerKind.ShotStarted:
                        if (!asked) { await a.RequestSnapshotAsync(true); await a.SendCueAsync("tail", Tail, 2, CueMode.Wait); asked = true; }
                        break;
                    case ServerKind.Chunk: await PrintSnapChunk("a", a, m.Chunk); break;
                    case ServerKind.ShotFinished: finished++; break;
                    case ServerKind.Snapshot:
                        parts++;
                        var whole = assembler.Add(m.Snapshot);
                        if (whole != null)
                        {
                            snapshot = whole;
                            File.WriteAllBytes(file, whole);
                            Console.WriteLine("SNAPSHOT " + whole.Length + " parts " + parts + " next " + m.Snapshot.NextShotIndex);
                        }
                        break;
                    case ServerKind.Error: Console.WriteLine("ERROR a " + m.Error.Code + " " + m.Error.Message); return 1;
                }
            }
            await a.CloseAsync();
            while (await a.ReceiveAsync() != null) { }
        }
        using (var b = await ShotStreamConnection.ConnectAsync(uri))
        {
            var opened = await b.OpenFromSnapshotAsync(new OpenSession { ClientName = "unity/CoreTests", FrameFormat = FrameFormat.Rgba8, Transport = Transport.Inline,
                                                                         MaxChunksInFlight = 1 }, File.ReadAllBytes(file), default(CancellationToken), 1024);
            Console.WriteLine("OPENED " + opened.SessionId);
            await b.SendCueAsync("tail", Tail, 2, CueMode.Wait);  // waits for the restore on the server
            bool restored = false;
            while (true)
            {
                var m = await b.ReceiveAsync() ?? throw new Exception("B ended early");
                if (m.Kind == ServerKind.Restored) { restored = true; Console.WriteLine("RESTORED " + m.Restored.NextShotIndex + " " + m.Restored.StoryFrames); }
                else if (m.Kind == ServerKind.Chunk)
                {
                    if (!restored) throw new Exception("a chunk before restored");
                    await PrintSnapChunk("b", b, m.Chunk);
                }
                else if (m.Kind == ServerKind.ShotFinished) break;
                else if (m.Kind == ServerKind.Error) { Console.WriteLine("ERROR b " + m.Error.Code + " " + m.Error.Message); return 1; }
            }
            await b.CloseAsync();
            while (await b.ReceiveAsync() != null) { }
        }
        Console.WriteLine("SNAPSHOT DONE");
        return 0;
    }

    static async Task PrintSnapChunk(string who, ShotStreamConnection conn, FrameChunk c)
    {
        var px = c.Pixels;
        if (px.Array == null || px.Count != c.ExpectedPixelBytes) throw new Exception("chunk " + c.ChunkSeq + " without its pixels");
        Console.WriteLine("SNAPCHUNK " + who + " " + c.ShotIndex + " " + c.StoryFrame + " " + Crc32(px.Array, px.Offset, px.Count) + " " + px.Count);
        await conn.AckAsync(c.ChunkSeq);
    }

    // Copies a chunk out of the shared-memory ring; with one credit the slot cannot be reused before the ack.
    static ArraySegment<byte> ReadRing(RingReader ring, FrameChunk c, ref byte[] copy)
    {
        var s = c.RingSlot ?? throw new Exception("chunk " + c.ChunkSeq + " has no ring slot");
        if (copy.Length < (long)s.Length) copy = new byte[s.Length];
        RingReadStatus status;
        if (!ring.TryRead((int)s.Slot, s.Sequence, (long)s.Offset, (long)s.Length, copy, out status))
            throw new Exception("chunk " + c.ChunkSeq + ": ring read " + status);
        return new ArraySegment<byte>(copy, 0, (int)s.Length);
    }
}
