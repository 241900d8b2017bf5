// Unity-layer tests under mono, against tests/unity/stubs/UnityEngineStub.cs (compiled to UnityEngine.dll).
// Built and run by tests/test_unity_package.py:
//   mono UnityLayerTests.exe                      -> unit tests; prints "N passed, M failed" last, exit code 1 on failure
//   mono UnityLayerTests.exe live URL [shm]       -> one real session against the service (prints "LIVE ...")
//   mono UnityLayerTests.exe snapshot URL DIR     -> a story saved as a snapshot file in DIR (persistentDataPath) and continued by
//                                                    another client (prints "SNAP ...", "SNAP OK" last)
//   mono UnityLayerTests.exe fake SCENARIO URL    -> the client against tests/unity/fake_gateway.py playing SCENARIO:
//        prints what the client raises ("OPENED id transport", "CLOSED reason", "ERROR message", ...), reads
//        cues from the test on stdin where the scenario needs them, "DONE" last (exit 0) or "TIMEOUT" (exit 1)
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Reflection;
using System.Threading;
using System.Threading.Tasks;
using ShotStream.Core;
using ShotStream.Unity;
using UnityEngine;
using UnityEngine.UI;
using Debug = UnityEngine.Debug;

static class UnityLayerTests
{
    static int passed, failed;

    static void Check(bool cond, string what) { if (!cond) throw new Exception("check failed: " + what); }
    static void Eq<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual)) throw new Exception(what + ": expected <" + expected + ">, got <" + actual + ">");
    }
    static E Throws<E>(Action a, string what) where E : Exception
    {
        try { a(); }
        catch (E e) { return e; }
        catch (Exception e) { throw new Exception(what + ": expected " + typeof(E).Name + ", got " + e.GetType().Name + ": " + e.Message); }
        throw new Exception(what + ": expected " + typeof(E).Name + ", nothing thrown");
    }

    static void Run(string name, Action test)
    {
        try { test(); passed++; Console.WriteLine("ok   " + name); }
        catch (Exception e) { failed++; Console.WriteLine("FAIL " + name + ": " + e); }
    }

    static Dictionary<string, string> P(params string[] kv)
    {
        var d = new Dictionary<string, string>();
        for (int i = 0; i + 1 < kv.Length; i += 2) d[kv[i]] = kv[i + 1];
        return d;
    }

    static ShotPromptMap Map()
    {
        var map = ScriptableObject.CreateInstance<ShotPromptMap>();
        map.name = "TestMap";
        map.Add("enter", "{character} enters the hall", 3, true)
           .Add("duel", "{a} duels {b} under {a}'s banner", 0, false)
           .Add("calm", "a quiet {{still}} courtyard", 2, false)
           .Add("broken", "{character enters", 1, false)
           .Add("stray", "the end }", 1, false);
        return map;
    }

    // mono UnityLayerTests.exe live URL [shm]: one real session through ShotStreamClient + ShotStreamScreen,
    // pumped like Unity's Update loop; prints "LIVE ..." lines and exits 0 when the shot played out.
    static int Live(string url, bool sharedMemory)
    {
        var go = new GameObject("live");
        var client = go.AddComponent<ShotStreamClient>();
        var screen = go.AddComponent<ShotStreamScreen>();
        client.Screen = screen;
        client.ServerUrl = url;
        client.GlobalCaption = "A lighthouse on a stormy coast.";
        client.Seed = 5;
        client.MaxChunksInFlight = 1;  // the second chunk only comes once the first is acked
        client.Transport = sharedMemory ? ShotTransport.SharedMemory : ShotTransport.Inline;
        client.ReconnectPolicy = new ReconnectPolicy { InitialDelay = TimeSpan.FromMilliseconds(50), MaxDelay = TimeSpan.FromMilliseconds(200), MaxRetries = 2 };
        var errors = new List<string>();
        int opened = 0, started = 0, finished = 0;
        client.sessionOpened.AddListener(s => { opened++; Console.WriteLine("LIVE opened " + s.Width + "x" + s.Height + " fps " + s.Fps + " credits " + s.MaxChunksInFlight + " transport " + ProtoEnums.Name(s.Transport)); });
        client.shotStarted.AddListener(s => started++);
        client.shotFinished.AddListener(s => { finished++; Console.WriteLine("LIVE finished " + s.EventId + " chunks " + s.Chunks + " frames " + s.Frames); });
        client.error.AddListener(m => { errors.Add(m); Console.WriteLine("LIVE error " + m); });
        string id = client.Cue("The keeper climbs the stairs.", 2, false);  // queued until the session opens
        client.Connect();
        var sw = Stopwatch.StartNew();
        while (finished == 0 && errors.Count == 0 && sw.Elapsed < TimeSpan.FromSeconds(240))
        {
            double now = Time.realtimeSinceStartupAsDouble;
            client.Pump(now);
            screen.Present(now);
            System.Threading.Thread.Sleep(5);
        }
        // let the last frames play out (16 fps)
        var tail = Stopwatch.StartNew();
        while (screen.Jitter != null && screen.Jitter.QueuedFrames > 0 && tail.Elapsed < TimeSpan.FromSeconds(10))
        {
            double now = Time.realtimeSinceStartupAsDouble;
            screen.Present(now); client.Pump(now); System.Threading.Thread.Sleep(5);
        }
        int uploads = screen.Texture == null ? 0 : screen.Texture.ApplyCalls;
        Console.WriteLine("LIVE cue " + id + " opened " + opened + " started " + started + " finished " + finished + " pushed " + screen.PushedFrames
            + " uploads " + uploads + " presented " + screen.PresentedFrameIndex + " errors " + errors.Count);
        client.Close();
        bool ok = opened == 1 && started == 1 && finished == 1 && errors.Count == 0 && screen.PushedFrames > 0 && uploads > 0
                  && screen.PresentedFrameIndex == screen.PushedFrames - 1;
        Console.WriteLine(ok ? "LIVE OK" : "LIVE FAILED");
        return ok ? 0 : 1;
    }

    // One ShotStreamClient + ShotStreamScreen of the snapshot test, and what it saw: every frame put on screen (its shot and a
    // CRC of the texture's bytes right after the upload), finished shots, first story frame per shot, errors.
    sealed class Player
    {
        public readonly string Name;
        public readonly ShotStreamClient Client;
        public readonly ShotStreamScreen Screen;
        public readonly List<KeyValuePair<uint, uint>> Frames = new List<KeyValuePair<uint, uint>>();  // (shot index, crc)
        public readonly List<string> Finished = new List<string>();
        public readonly Dictionary<uint, ulong> FirstStoryFrame = new Dictionary<uint, ulong>();
        public readonly List<string> Errors = new List<string>();

        public Player(string name, string url)
        {
            Name = name;
            var go = new GameObject(name);
            Client = go.AddComponent<ShotStreamClient>();
            Screen = go.AddComponent<ShotStreamScreen>();
            Client.Screen = Screen;
            Client.ServerUrl = url;
            Client.GlobalCaption = "Sea.";  // short: the tiny text encoder keeps 32 tokens, and the shot prompts must count
            Client.Seed = 5;
            Client.MaxChunksInFlight = 1;
            Client.Transport = ShotTransport.Inline;
            Client.SnapshotPartBytes = 1024;  // a tiny story's snapshot (~8 KB) then goes up in several parts
            Client.ReconnectPolicy = new ReconnectPolicy { MaxRetries = 0 };
            Client.shotFinished.AddListener(f => Finished.Add(f.EventId + ":" + f.ShotIndex + ":" + f.Chunks));
            Client.chunkReceived.AddListener(c => { if (!FirstStoryFrame.ContainsKey(c.ShotIndex)) FirstStoryFrame[c.ShotIndex] = c.StoryFrame; });
            Client.error.AddListener(m => { Errors.Add(m); Console.WriteLine("SNAP " + name + " error " + m); });
            Screen.framePresented.AddListener(f => Frames.Add(new KeyValuePair<uint, uint>(f.ShotIndex, CrcOf(Screen.Texture.RawDataForTests))));
        }

        public bool PumpUntil(Func<bool> done, double seconds)
        {
            var sw = Stopwatch.StartNew();
            while (!done())
            {
                if (Errors.Count > 0 || sw.Elapsed.TotalSeconds > seconds) return false;
                double now = Time.realtimeSinceStartupAsDouble;
                Client.Pump(now);
                Screen.Present(now);
                Thread.Sleep(2);
            }
            return true;
        }

        // Until the server finished `shots` shots and every frame pushed is on screen.
        public bool Play(int shots) { return PumpUntil(() => Finished.Count >= shots && Screen.PushedFrames > 0 && Screen.PresentedFrameIndex == Screen.PushedFrames - 1, 240); }

        public List<uint> CrcsOfShot(uint shot) { return Frames.FindAll(f => f.Key == shot).ConvertAll(f => f.Value); }
    }

    static uint CrcOf(byte[] a)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in a)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (uint)-(int)(crc & 1));
        }
        return ~crc;
    }

    // mono UnityLayerTests.exe snapshot URL DIR: the issue 12 story. Client A plays "walk" (1 chunk), asks for the snapshot while walk is
    // on (it waits for the shot's end) and cues "tail" (2 chunks) right after it, so the snapshot is the story after walk; A saves it with
    // ShotStreamSnapshotFile under persistentDataPath = DIR and plays tail. Client B loads the file, continues it (ContinueFromSnapshot)
    // and cues tail: every frame B shows must equal A's tail, frame for frame. Client C cues tail in a new story, as a control: its frames
    // must differ (the restored story is what makes B's frames A's). Both cue logs are read back.
    static int LiveSnapshot(string url, string dir)
    {
        Debug.Sink = (t, m) => { if (t == LogType.Exception || t == LogType.Error) Console.WriteLine("SNAP log " + t + " " + m); };
        Application.PersistentDataPathForTests = dir;
        const string Walk = "The keeper climbs the stairs.", Tail = "A wave hits the rocks.";
        var a = new Player("a", url);
        string saved = null; int snapNext = -1, snapBytes = 0;
        a.Client.snapshotReady.AddListener((data, next) => { snapBytes = data.Length; snapNext = next; saved = ShotStreamSnapshotFile.Save(data, "story.snap"); });
        bool tailCued = false;
        a.Client.shotStarted.AddListener(st =>
        {
            if (tailCued) return;
            a.Client.RequestSnapshot();   // mid-shot: taken when walk ends
            a.Client.Cue(Tail, 2, false); // queued behind it
            tailCued = true;
        });
        CueLog logA = null;
        a.Client.cueLogReady.AddListener(l => logA = l);
        a.Client.Cue(Walk, 1, false);
        a.Client.Connect();
        bool ok = a.Play(2) && saved != null;
        if (ok) { a.Client.RequestCueLog(); ok = a.PumpUntil(() => logA != null, 60); }
        a.Client.Close();
        Console.WriteLine("SNAP a finished " + string.Join(",", a.Finished) + " frames " + a.Frames.Count + " snapshot " + snapBytes + " bytes next " + snapNext + " file " + saved);
        if (!ok) { Console.WriteLine("SNAP FAILED a"); return 1; }
        Console.WriteLine("SNAP a log first " + logA.FirstShotIndex + " " + string.Join(",", logA.Entries.ConvertAll(e => e.Cue.Prompt + "/" + e.ShotIndex + "/" + e.Chunks + "/" + e.Finished)));

        var b = new Player("b", url);
        b.Client.GlobalCaption = "";  // caption and seed come from the snapshot
        b.Client.Seed = 0;
        b.Client.ContinueFromSnapshot = ShotStreamSnapshotFile.Load("story.snap");
        SnapshotRestored restored = null;
        int openedBeforeRestored = -1;
        b.Client.sessionOpened.AddListener(s => openedBeforeRestored = restored == null ? 1 : 0);
        b.Client.restored.AddListener(r => restored = r);
        CueLog logB = null;
        b.Client.cueLogReady.AddListener(l => logB = l);
        b.Client.Cue(Tail, 2, false);  // sent once the session opens; the server starts it after the restore
        b.Client.Connect();
        ok = b.Play(1);
        if (ok) { b.Client.RequestCueLog(); ok = b.PumpUntil(() => logB != null, 60); }
        b.Client.Close();
        Console.WriteLine("SNAP b finished " + string.Join(",", b.Finished) + " frames " + b.Frames.Count
            + (restored == null ? " not restored" : " restored next " + restored.NextShotIndex + " story frames " + restored.StoryFrames + " opened first " + openedBeforeRestored));
        if (!ok || restored == null) { Console.WriteLine("SNAP FAILED b"); return 1; }
        Console.WriteLine("SNAP b log first " + logB.FirstShotIndex + " " + string.Join(",", logB.Entries.ConvertAll(e => e.Cue.Prompt + "/" + e.ShotIndex + "/" + e.Chunks + "/" + e.Finished)));

        var c = new Player("c", url);
        c.Client.Cue(Tail, 2, false);
        c.Client.Connect();
        ok = c.Play(1);
        c.Client.Close();
        if (!ok) { Console.WriteLine("SNAP FAILED c"); return 1; }

        var tailA = a.CrcsOfShot(1);
        var tailB = b.CrcsOfShot(1);
        var tailC = c.CrcsOfShot(0);
        Console.WriteLine("SNAP tail frames a " + tailA.Count + " b " + tailB.Count + " c " + tailC.Count + " story frame a " + a.FirstStoryFrame[1] + " b " + b.FirstStoryFrame[1]);
        Console.WriteLine("SNAP tail a " + string.Join(",", tailA));
        Console.WriteLine("SNAP tail b " + string.Join(",", tailB));
        bool same = tailA.Count == 21 && System.Linq.Enumerable.SequenceEqual(tailA, tailB) && b.Frames.Count == tailB.Count;
        bool control = tailC.Count == 21 && !System.Linq.Enumerable.SequenceEqual(tailA, tailC);
        bool frames = a.FirstStoryFrame[1] == b.FirstStoryFrame[1] && restored.StoryFrames == a.FirstStoryFrame[1];
        Console.WriteLine("SNAP same " + same + " control differs " + control + " story frames " + frames);
        ok = same && control && frames && snapNext == 1 && openedBeforeRestored == 1 && restored.NextShotIndex == 1;
        Console.WriteLine(ok ? "SNAP OK" : "SNAP FAILED");
        return ok ? 0 : 1;
    }

    // Issue 13 live: the same three-shot story twice through HAProxy, in front of two real servers. "ref" plays it uninterrupted;
    // "moved" stops (no pumping: no acks, nothing presented) as soon as shot 1's first chunk is in (shot 0's snapshot kept), prints
    // MOVE-KILL, and waits for the test to kill that session's server; the client then resumes on the other server. Every shot's
    // frames on screen are printed (CRCs) for the test to compare.
    static int LiveFailover(string url)
    {
        Debug.Sink = (t, m) => { if (t == LogType.Exception || t == LogType.Error) Console.WriteLine("MOVE log " + t + " " + m); };
        var shots = new[] { new KeyValuePair<string, int>("The keeper climbs the stairs.", 2), new KeyValuePair<string, int>("A wave hits the rocks.", 3),
                            new KeyValuePair<string, int>("Gulls circle the lamp.", 2) };
        foreach (var name in new[] { "ref", "moved" })
        {
            var p = new Player(name, url);
            p.Client.ReconnectPolicy = new ReconnectPolicy { InitialDelay = TimeSpan.FromMilliseconds(200), MaxDelay = TimeSpan.FromSeconds(1), MaxRetries = 10 };
            p.Client.SnapshotPartBytes = SnapshotParts.MaxUploadPartBytes;
            var errors = new List<string>();
            p.Client.error.AddListener(m => { Console.WriteLine("MOVE " + name + " error " + m); if (!m.EndsWith("(retrying)")) errors.Add(m); });
            StoryResumed moved = null;
            p.Client.storyResumed.AddListener(r => { moved = r; Console.WriteLine("MOVE " + name + " resumed " + r.FromSnapshot + " next " + r.NextShotIndex
                + " recued " + string.Join(",", r.Recued) + " reason " + r.Reason); });
            bool stop = false;
            if (name == "moved")
                p.Client.chunkReceived.AddListener(c => { if (!stop && moved == null && c.ShotIndex == 1 && p.Client.LastStorySnapshotNextShot == 1) stop = true; });
            var playbacks = new List<ShotPlayback>();
            foreach (var s in shots) playbacks.Add(p.Client.PlayShot(s.Key, s.Value));
            p.Client.Connect();
            var sw = Stopwatch.StartNew();
            bool killed = false;
            Func<bool> done = () => playbacks.TrueForAll(x => x.IsDone) && p.Screen.PresentedFrameIndex == p.Screen.PushedFrames - 1;
            while (!done() && errors.Count == 0 && sw.Elapsed.TotalSeconds < 300)
            {
                double now = Time.realtimeSinceStartupAsDouble;
                p.Client.Pump(now);
                if (stop && !killed)
                {
                    Console.WriteLine("MOVE-KILL " + p.Client.Session.SessionId);
                    Console.Out.Flush();
                    killed = Console.In.ReadLine() == "killed";
                    if (!killed) break;
                    continue;  // the frames pushed from the old session's shot 1 are not presented: the screen starts over with the new session
                }
                p.Screen.Present(now);
                Thread.Sleep(2);
            }
            p.Client.Close();
            Console.WriteLine("MOVE " + name + " playbacks " + string.Join(",", playbacks.ConvertAll(x => x.Failed ? "failed:" + x.Error : x.IsDone ? "done" : "pending"))
                + " finished " + string.Join(",", p.Finished) + " errors " + errors.Count);
            for (uint shot = 0; shot < 3; shot++) Console.WriteLine("MOVE " + name + " shot " + shot + " " + string.Join(",", p.CrcsOfShot(shot)));
            if (!done()) { Console.WriteLine("MOVE FAILED " + name); return 1; }
        }
        Console.WriteLine("MOVE DONE");
        return 0;
    }

    static int Main(string[] args) { return ProcessExit.Now(RunAll(args)); }

    static int RunAll(string[] args)
    {
        if (args.Length >= 2 && args[0] == "live") return Live(args[1], args.Length == 3 && args[2] == "shm");
        if (args.Length == 3 && args[0] == "snapshot") return LiveSnapshot(args[1], args[2]);
        if (args.Length == 3 && args[0] == "fake") return Fake(args[1], args[2]);
        if (args.Length == 2 && args[0] == "failover") return LiveFailover(args[1]);
        Debug.Sink = (t, m) => { };
        Run("map resolves template, chunks and cut", () =>
        {
            var r = Map().Resolve("enter", P("character", "Ada"));
            Eq("Ada enters the hall", r.Prompt, "prompt");
            Eq(3u, r.Chunks, "chunks");
            Eq(true, r.Cut, "cut");
            Eq(CueMode.Cut, r.Mode, "mode");
            var d = Map().Resolve("duel", P("a", "Ada", "b", "Bo", "unused", "x"));
            Eq("Ada duels Bo under Ada's banner", d.Prompt, "repeated params");
            Eq(CueMode.Wait, d.Mode, "wait");
            Eq("a quiet {still} courtyard", Map().Resolve("calm", null).Prompt, "escaped braces, no params");
        });
        Run("map unknown event lists known events", () =>
        {
            var e = Throws<KeyNotFoundException>(() => Map().Resolve("exit", P()), "unknown");
            Check(e.Message.Contains("\"exit\"") && e.Message.Contains("\"enter\"") && e.Message.Contains("TestMap"), e.Message);
            var empty = ScriptableObject.CreateInstance<ShotPromptMap>();
            Check(Throws<KeyNotFoundException>(() => empty.Resolve("x"), "empty").Message.Contains("known: none"), "empty map message");
        });
        Run("map missing parameters are all named", () =>
        {
            var e = Throws<ArgumentException>(() => Map().Resolve("duel", P("b", "Bo")), "missing");
            Check(e.Message.Contains("missing parameter {a} for") && e.Message.Contains("\"duel\""), e.Message);
            var e2 = Throws<ArgumentException>(() => Map().Resolve("duel", null), "missing all");
            Check(e2.Message.Contains("{a}, {b}") && e2.Message.Contains("parameters"), e2.Message);
        });
        Run("map malformed templates", () =>
        {
            Check(Throws<FormatException>(() => Map().Resolve("broken", P("character", "Ada")), "unclosed").Message.Contains("unclosed"), "unclosed msg");
            Check(Throws<FormatException>(() => Map().Resolve("stray", P()), "stray").Message.Contains("stray"), "stray msg");
            Throws<ArgumentNullException>(() => Map().Resolve(null), "null event");
        });

        Run("screen uploads flipped rows and drives targets", () =>
        {
            var go = new GameObject("screen");
            var screen = go.AddComponent<ShotStreamScreen>();
            var raw = go.AddComponent<RawImage>();
            var rend = go.AddComponent<Renderer>();
            var rt = new RenderTexture(3, 2, 0);
            screen.RawImage = raw; screen.TargetRenderer = rend; screen.RenderTarget = rt; screen.StartFrames = 1;
            screen.OnSessionOpened(new SessionOpened { Width = 3, Height = 2, Fps = 16, FrameFormat = FrameFormat.Rgba8, MaxChunksInFlight = 2, FramesFirstChunk = 9, FramesPerChunk = 12 });
            var tex = screen.Texture;
            Check(tex != null, "texture");
            Eq(TextureFormat.RGBA32, tex.format, "format");
            Eq(3, tex.width, "width"); Eq(2, tex.height, "height");
            Check(ReferenceEquals(raw.texture, tex), "raw image bound");
            var block = new MaterialPropertyBlock();
            rend.GetPropertyBlock(block);
            Check(ReferenceEquals(block.GetTexture("_MainTex"), tex), "renderer bound through its property block");
            screen.TextureProperty = "_BaseMap";  // URP
            rend.GetPropertyBlock(block);
            Check(ReferenceEquals(block.GetTexture("_BaseMap"), tex), "bound to the configured property");
            Eq(36, screen.Jitter.Capacity, "capacity: (2 credits + 1) x 12 frames per chunk");
            var frame = new byte[24];
            for (int i = 0; i < frame.Length; i++) frame[i] = (byte)(i + 1);  // row 0 = 1..12, row 1 = 13..24
            int blits = Graphics.BlitCalls;
            Eq(1, screen.PushFrames(frame, 0, 1, 100.0), "accepted");
            Check(screen.Present(100.0), "presented");
            var got = tex.RawDataForTests;
            for (int i = 0; i < 12; i++) { Eq((byte)(13 + i), got[i], "bottom row = source row 1"); Eq((byte)(1 + i), got[12 + i], "top row = source row 0"); }
            Eq(1, tex.GetRawTextureDataCalls, "written straight into the texture's memory");
            Eq(1, tex.ApplyCalls, "applies");
            Eq(blits + 1, Graphics.BlitCalls, "blit");
            Check(ReferenceEquals(rt, Graphics.LastBlitDest) && ReferenceEquals(tex, Graphics.LastBlitSource), "blit args");
            Check(!screen.Present(100.01), "same frame not re-uploaded");
            Eq(0L, screen.PresentedFrameIndex, "presented index");
        });
        Run("screen refuses non-RGBA sessions", () =>
        {
            var screen = new GameObject().AddComponent<ShotStreamScreen>();
            Throws<NotSupportedException>(() => screen.OnSessionOpened(new SessionOpened { Width = 4, Height = 4, FrameFormat = FrameFormat.Rgb8 }), "rgb8");
            Throws<InvalidOperationException>(() => screen.PushFrames(new byte[64], 0, 1, 0), "unconfigured");
        });
        Run("screen presents at 16 fps without per-frame allocation", () =>
        {
            var screen = new GameObject().AddComponent<ShotStreamScreen>();
            const int W = 64, H = 36;
            screen.Configure(W, H, 16.0, 32, 4);
            var chunk = new byte[W * H * 4 * 4];  // 4 frames
            for (int i = 0; i < chunk.Length; i++) chunk[i] = (byte)(i * 7);
            double t = 0;
            int uploads = 0;
            Action cycle = () =>
            {
                screen.PushFrames(chunk, 0, 4, t);
                for (int k = 0; k < 4; k++) { if (screen.Present(t)) uploads++; t += 1.0 / 16; }
            };
            for (int i = 0; i < 10; i++) cycle();  // warm up (JIT, first-use)
            int before = screen.Texture.ApplyCalls;
            long a0 = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 250; i++) cycle();
            long allocated = GC.GetAllocatedBytesForCurrentThread() - a0;
            int n = screen.Texture.ApplyCalls - before;
            Check(n >= 990, "uploads in measured loop: " + n);
            Check(allocated < 4096, "allocated " + allocated + " bytes over " + n + " uploads");
            // last uploaded frame = frame 3 of the chunk, flipped
            var got = screen.Texture.RawDataForTests;
            int fb = W * H * 4, row = W * 4;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < row; x += 61)
                    Eq(chunk[3 * fb + y * row + x], got[(H - 1 - y) * row + x], "pixel y=" + y + " x=" + x);
        });

        // Defect 1 of issue 11: a 5 s pause with a full buffer, then play on: every frame shown exactly once, in order,
        // whatever paused the game. Frames carry their index in every byte; the screen is driven by its Update, as Unity does.
        Func<string, Action<ShotStreamScreen>, Action<ShotStreamScreen, int>, Action<ShotStreamScreen>, List<long>> pausePlay = (what, setup, pausedTick, resume) =>
        {
            var screen = new GameObject("pause " + what).AddComponent<ShotStreamScreen>();
            setup(screen);
            screen.OnSessionOpened(new SessionOpened { Width = 4, Height = 2, Fps = 16, FrameFormat = FrameFormat.Rgba8, MaxChunksInFlight = 2, FramesFirstChunk = 12, FramesPerChunk = 12 });
            int capacity = screen.Jitter.Capacity;
            Eq(36, capacity, what + ": capacity");
            var frames = new byte[capacity * 32];
            for (int i = 0; i < frames.Length; i++) frames[i] = (byte)(i / 32);
            Eq(capacity, screen.PushFrames(frames, 0, capacity), what + ": the buffer is full");
            var shown = new List<long>();
            Action<Action> recording = step =>
            {
                long before = screen.PresentedFrameIndex;
                step();
                if (screen.PresentedFrameIndex != before)
                {
                    shown.Add(screen.PresentedFrameIndex);
                    Eq((byte)screen.PresentedFrameIndex, screen.Texture.RawDataForTests[0], what + ": the texture holds the frame shown");
                }
            };
            Action<int> update = n => { for (int i = 0; i < n; i++) recording(() => Message(screen, "Update")); };
            Time.FrameSecondsForTests = 1f / 60f;
            update(60);                                        // 1 s of play at 60 fps: 16 frames
            Check(shown.Count >= 15 && shown.Count <= 17, what + ": playing before the pause, " + shown.Count);
            int beforePause = shown.Count;
            for (int tick = 0; tick < 300; tick++) { int t = tick; recording(() => pausedTick(screen, t)); }  // 5 s
            Eq(beforePause, shown.Count, what + ": nothing new on screen while paused");
            recording(() => resume(screen));
            Time.FrameSecondsForTests = 1f / 60f;
            update(60 * 4);                                    // 4 s: more than the 20 frames left
            Time.timeScale = 1f;
            return shown;
        };
        Action<string, List<long>> allOnceInOrder = (what, shown) =>
        {
            Eq(36, shown.Count, what + ": every frame shown: " + string.Join(",", shown));
            for (int k = 0; k < shown.Count; k++) Eq((long)k, shown[k], what + ": frame " + k + " once, in order");
        };
        Run("screen paused 5 s with a full buffer drops nothing (Pause/Resume)", () =>
        {
            ShotStreamScreen s = null;
            var shown = pausePlay("Pause()", x => { s = x; }, (x, tick) => { if (tick == 0) x.Pause(); Check(x.Paused, "paused"); Message(x, "Update"); }, x => x.Resume());
            allOnceInOrder("Pause()", shown);
            Eq(0, s.Jitter.Stalls, "no stall"); Eq(0L, s.Jitter.SkippedFrames, "no skips");
        });
        Run("screen following Time.timeScale: time scale 0 for 5 s drops nothing", () =>
        {
            ShotStreamScreen s = null;
            var shown = pausePlay("timeScale 0", x => { s = x; x.FollowTimeScale = true; }, (x, tick) => { Time.timeScale = 0f; Message(x, "Update"); },
                                  x => Time.timeScale = 1f);
            allOnceInOrder("timeScale 0", shown);
            Eq(0L, s.Jitter.SkippedFrames, "no skips");
        });
        Run("screen after 5 s without Updates (editor pause, app in the background) drops nothing", () =>
        {
            ShotStreamScreen s = null;
            // no Update for 5 s; then one frame that lasted 5 s, capped at the clock step
            var shown = pausePlay("no updates", x => { s = x; }, (x, tick) => { }, x => { Time.FrameSecondsForTests = 5f; Message(x, "Update"); });
            allOnceInOrder("no updates", shown);
            Eq(0L, s.Jitter.SkippedFrames, "no skips");
            Check(s.PlaybackTime < 1.0 + 4.0 + 0.25 + 1e-3, "the 5 s frame counted as the 0.25 s clock step: " + s.PlaybackTime);
        });
        Run("screen Skip policy after a 5 s frame: bounded by the clock step, counted", () =>
        {
            ShotStreamScreen s = null;
            var shown = pausePlay("skip", x => { s = x; x.CatchUp = JitterCatchUp.Skip; }, (x, tick) => { }, x => { Time.FrameSecondsForTests = 5f; Message(x, "Update"); });
            Eq(36L - s.Jitter.SkippedFrames, (long)shown.Count, "shown + skipped = all");
            Check(s.Jitter.SkippedFrames >= 1 && s.Jitter.SkippedFrames <= 3, "0.25 s = 4 slots: at most 3 skipped, " + s.Jitter.SkippedFrames);
            for (int k = 1; k < shown.Count; k++) Check(shown[k] > shown[k - 1], "in order");
            Eq(1, s.Jitter.Stalls, "one stall");
            Throws<ArgumentOutOfRangeException>(() => s.MaxClockStep = 0, "clock step must be positive");
        });

        // Defect 2 of issue 11: what the player sees, as events.
        Run("screen raises shot presented, frame presented and shot ended on screen", () =>
        {
            var screen = new GameObject("events").AddComponent<ShotStreamScreen>();
            screen.Configure(2, 1, 16.0, 16, 1);
            var log = new List<string>();
            screen.shotPresented.AddListener(s => log.Add("presented " + s.EventId + "/" + s.ShotIndex + " first " + s.FirstFrame + " t " + s.PlaybackTime.ToString("0.####")));
            screen.shotEnded.AddListener(s => log.Add("ended " + s.EventId + " shown " + s.FramesShown + " t " + s.PlaybackTime.ToString("0.####")));
            screen.framePresented.AddListener(f => log.Add("frame " + f.FrameIndex + " " + f.EventId + "#" + f.FrameInShot));
            var px = new byte[8 * 8];
            screen.PushFrames(px, 0, 3, 0, "e1", 0, false);
            screen.PushFrames(px, 0, 2, 0, "e1", 0, true);   // e1's last chunk
            screen.PushFrames(px, 0, 2, 0, "e2", 1, true);   // e2: one chunk
            for (int k = 0; k <= 8; k++) screen.Advance(k == 0 ? 0 : 1 / 16.0);
            Eq("presented e1/0 first 0 t 0|frame 0 e1#0|frame 1 e1#1|frame 2 e1#2|frame 3 e1#3|frame 4 e1#4|"
               + "ended e1 shown 5 t 0.3125|presented e2/1 first 5 t 0.3125|frame 5 e2#0|frame 6 e2#1|ended e2 shown 2 t 0.4375",
               string.Join("|", log), "events in order; a shot ends when its last frame's time is over");
            log.Clear();
            screen.PushFrames(px, 0, 2, 0, "e3", 2, false);  // a cut: e3 never gets its last chunk
            screen.PushFrames(px, 0, 1, 0);                   // frames without a shot
            for (int k = 0; k < 5; k++) screen.Advance(1 / 16.0);
            Eq("presented e3/2 first 7 t 0.5625|frame 7 e3#0|frame 8 e3#1|ended e3 shown 2 t 0.6875|frame 9 #0", string.Join("|", log),
               "a shot replaced by other frames has ended");
        });
        Run("screen paused on a shot's last frame: the shot ends only once time moves on", () =>
        {
            var screen = new GameObject("pause end").AddComponent<ShotStreamScreen>();
            screen.Configure(2, 1, 16.0, 16, 1);
            int ended = 0;
            screen.shotEnded.AddListener(s => ended++);
            screen.PushFrames(new byte[16], 0, 2, 0, "e", 0, true);
            screen.Advance(0); screen.Advance(1 / 16.0);
            screen.Pause();
            for (int k = 0; k < 100; k++) screen.Advance(1 / 16.0);
            Eq(0, ended, "paused on the last frame");
            screen.Resume();
            screen.Advance(1 / 16.0);
            Eq(1, ended, "ended once playing on");
        });
        Run("client: shotFinished arrives before the shot ends on screen; PlayShot waits for the screen", () =>
        {
            var go = new GameObject("playshot");
            var client = go.AddComponent<ShotStreamClient>();
            var screen = go.AddComponent<ShotStreamScreen>();
            client.Screen = screen;
            client.SendHook = m => Task.FromResult(0);
            var log = new List<string>();
            client.shotFinished.AddListener(f => log.Add("finished " + f.EventId + " @" + screen.PresentedFrameIndex));
            client.shotPresented.AddListener(f => log.Add("presented " + f.EventId));
            client.shotEnded.AddListener(f => log.Add("ended " + f.EventId + " @" + screen.PresentedFrameIndex));
            var shot = client.PlayShot("the gate opens", 1, false);
            Check(shot.keepWaiting && shot.MoveNext(), "a coroutine keeps waiting");
            client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = 2, Height = 1, Fps = 16, FrameFormat = FrameFormat.Rgba8, MaxChunksInFlight = 2, FramesFirstChunk = 4, FramesPerChunk = 4 }));
            client.Deliver(new ServerMessage(ServerKind.ShotStarted, new ShotStarted { EventId = shot.EventId }));
            client.Deliver(new ServerMessage(ServerKind.Chunk, new FrameChunk { ChunkSeq = 1, EventId = shot.EventId, NumFrames = 4, Width = 2, Height = 1, FrameFormat = FrameFormat.Rgba8, LastInShot = true }), new byte[32]);
            client.Deliver(new ServerMessage(ServerKind.ShotFinished, new ShotFinished { EventId = shot.EventId, Chunks = 1, Frames = 4 }));
            client.Pump(0);
            Check(shot.Started && !shot.IsDone, "the server finished it, the screen has not shown it");
            double t = 0;
            for (int k = 0; k < 6 && !shot.IsDone; k++) { screen.Advance(k == 0 ? 0 : 1 / 16.0); t = screen.PlaybackTime; client.Pump(0); }
            Check(shot.IsDone && !shot.Failed && !shot.keepWaiting && !shot.MoveNext(), "done: a coroutine resumes");
            Eq(4 / 16.0, t, "ended when frame 3's time was over");
            Eq(4, shot.Result.FramesShown, "all frames shown");
            Eq(4, shot.Task.Result.FramesShown, "await gets the same");
            Eq("finished " + shot.EventId + " @-1|presented " + shot.EventId + "|ended " + shot.EventId + " @3", string.Join("|", log), "order");
        });
        Run("client PlayShot fails on a server error, a cut that drops it, the session's end; Close keeps queued ones", () =>
        {
            var client = new GameObject("fails").AddComponent<ShotStreamClient>();
            client.SendHook = m => Task.FromResult(0);
            client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = 2, Height = 1, FrameFormat = FrameFormat.Rgba8 }));
            client.Pump(0);
            var a = client.PlayShot("a", 1); var b = client.PlayShot("b", 1); var c = client.PlayShot("c", 1);
            string cut = client.Cue("d", 1, true);
            var e = client.PlayShot("e", 1);
            client.Deliver(new ServerMessage(ServerKind.ShotStarted, new ShotStarted { EventId = a.EventId }));
            client.Deliver(new ServerMessage(ServerKind.Error, new ServerError { Code = 3, Message = "prompt too long", EventId = b.EventId }));
            client.Deliver(new ServerMessage(ServerKind.ShotStarted, new ShotStarted { EventId = cut }));  // the cut: c never started
            client.Pump(0);
            Check(b.Failed && b.Error.Contains("prompt too long"), "b: " + b.Error);
            Check(c.Failed && c.Error.Contains("cut"), "c: " + c.Error);
            Check(!a.IsDone, "a started before the cut: it ends on screen (or when finished, with no screen)");
            Check(!e.IsDone, "e was sent after the cut");
            var ex = Throws<AggregateException>(() => { var r = c.Task.Result; }, "await throws");
            Check(ex.InnerException is ShotNotPlayedException && ((ShotNotPlayedException)ex.InnerException).EventId == c.EventId, ex.InnerException.Message);
            client.Deliver(new ServerMessage(ServerKind.ShotFinished, new ShotFinished { EventId = a.EventId }));
            client.Pump(0);
            Check(a.IsDone && !a.Failed && a.Result.FirstFrame == -1, "no screen: done when the server finished it");
            typeof(ShotStreamClient).GetMethod("EndSession", BindingFlags.Instance | BindingFlags.NonPublic).Invoke(client, new object[] { "connection lost: x" });
            Check(e.Failed && e.Error.Contains("connection lost"), "e: " + e.Error);
            var other = new GameObject("queued").AddComponent<ShotStreamClient>();
            var queued = other.PlayShot("later", 1);
            other.Close();
            Check(!queued.IsDone, "a cue waiting for a session stays queued, and so does its playback");
        });
        Run("await PlayShot on a main-thread context, like Unity's: a cutscene of two shots", () =>
        {
            var ctx = new MainThreadContext();
            var previous = SynchronizationContext.Current;
            SynchronizationContext.SetSynchronizationContext(ctx);
            try
            {
                var go = new GameObject("await");
                var client = go.AddComponent<ShotStreamClient>();
                var screen = go.AddComponent<ShotStreamScreen>();
                var director = go.AddComponent<ShotStreamDirector>();
                client.Screen = screen; director.Client = client; director.PromptMap = Map();
                var sent = new List<Cue>();
                client.SendHook = m => { if (m.Kind == ClientKind.Cue) sent.Add(m.AsCue); return Task.FromResult(0); };
                var names = new List<string>();
                director.shotPresented.AddListener(n => names.Add("presented " + n));
                director.shotEnded.AddListener(n => names.Add("ended " + n));
                client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = 2, Height = 1, Fps = 16, FrameFormat = FrameFormat.Rgba8, MaxChunksInFlight = 2, FramesFirstChunk = 2, FramesPerChunk = 2 }));
                client.Pump(0);
                var steps = new List<string>();
                Func<Task> cutscene = async () =>
                {
                    steps.Add("start " + Thread.CurrentThread.ManagedThreadId);
                    var first = await director.PlayShot("enter", P("character", "Ada"));
                    steps.Add("after enter " + first.FramesShown + " " + Thread.CurrentThread.ManagedThreadId);
                    await director.PlayShot("calm");
                    steps.Add("after calm " + Thread.CurrentThread.ManagedThreadId);
                };
                var run = cutscene();
                ulong seq = 0;
                uint shotIndex = 0;
                int served = 0;
                for (int frame = 0; frame < 200 && !run.IsCompleted; frame++)
                {
                    while (served < sent.Count)  // the "server": a shot of one 2-frame chunk per cue, as soon as it is cued
                    {
                        var cue = sent[served++];
                        client.Deliver(new ServerMessage(ServerKind.ShotStarted, new ShotStarted { EventId = cue.EventId, ShotIndex = shotIndex }));
                        client.Deliver(new ServerMessage(ServerKind.Chunk, new FrameChunk { ChunkSeq = ++seq, EventId = cue.EventId, ShotIndex = shotIndex, NumFrames = 2, Width = 2, Height = 1, FrameFormat = FrameFormat.Rgba8, LastInShot = true }), new byte[16]);
                        client.Deliver(new ServerMessage(ServerKind.ShotFinished, new ShotFinished { EventId = cue.EventId, ShotIndex = shotIndex++ }));
                    }
                    client.Pump(0);
                    screen.Advance(1 / 60.0);
                    ctx.RunPending();
                }
                Check(run.IsCompleted && !run.IsFaulted, "the cutscene ran to its end: " + string.Join("|", steps) + (run.Exception != null ? run.Exception.ToString() : ""));
                int main = Thread.CurrentThread.ManagedThreadId;
                Eq("start " + main + "|after enter 2 " + main + "|after calm " + main, string.Join("|", steps), "awaits resume on the main thread, after each shot ended on screen");
                Eq("presented enter|ended enter|presented calm|ended calm", string.Join("|", names), "the director's on-screen events by game event name");
                Eq(2, sent.Count, "the second shot was cued only once the first had ended");
            }
            finally { SynchronizationContext.SetSynchronizationContext(previous); }
        });

        Run("screen reuses its jitter buffer for a new session of the same size", () =>
        {
            var screen = new GameObject().AddComponent<ShotStreamScreen>();
            var s = new SessionOpened { Width = 8, Height = 4, Fps = 16, FrameFormat = FrameFormat.Rgba8, MaxChunksInFlight = 1, FramesFirstChunk = 3, FramesPerChunk = 5 };
            screen.OnSessionOpened(s);
            var jitter = screen.Jitter;
            var tex = screen.Texture;
            Eq(10, jitter.Capacity, "(1 credit + 1) x 5 frames per chunk");
            screen.PushFrames(new byte[8 * 4 * 4 * 3], 0, 3, 0.0);
            Check(screen.Present(0.0), "playing");
            screen.OnSessionOpened(s);  // a reconnect: a new session of the same server
            Check(ReferenceEquals(jitter, screen.Jitter) && ReferenceEquals(tex, screen.Texture), "same jitter buffer and texture: nothing allocated");
            Eq(0, jitter.QueuedFrames, "the old session's frames are dropped");
            Eq(0L, screen.PushedFrames, "frame numbering restarts");
            Eq(-1L, screen.PresentedFrameIndex, "nothing of the new session on screen yet");
            s.MaxChunksInFlight = 3;
            screen.OnSessionOpened(s);
            Check(!ReferenceEquals(jitter, screen.Jitter), "another capacity needs other buffers");
            Eq(20, screen.Jitter.Capacity, "(3 + 1) x 5");
            screen.CapacityFrames = 7;
            screen.OnSessionOpened(s);
            Eq(7, screen.Jitter.Capacity, "a capacity set on the screen wins");
        });
        Run("screen in edit mode destroys its textures with DestroyImmediate", () =>
        {
            Application.PlayingForTests = false;  // the editor preview's case
            try
            {
                var screen = new GameObject().AddComponent<ShotStreamScreen>();
                screen.Configure(2, 2);
                var first = screen.Texture;
                screen.Configure(3, 2);  // another size replaces the texture
                Check(first.IsDestroyedForTests, "the old texture is destroyed");
                var second = screen.Texture;
                screen.Release();
                Check(second.IsDestroyedForTests && screen.Texture == null && screen.Jitter == null, "released");
                Throws<UnityException>(() => UnityEngine.Object.Destroy(second), "the stub refuses Destroy in edit mode, as Unity does");
            }
            finally { Application.PlayingForTests = true; }
        });
        Run("client: a throwing screen or listener strands no queued cue and stops no later event", () =>
        {
            var go = new GameObject("throwing");
            var client = go.AddComponent<ShotStreamClient>();
            client.Screen = go.AddComponent<ShotStreamScreen>();
            string id = client.Cue("a castle at dawn", 1, false);  // not connected: queued until the session opens
            var sent = new List<ClientMessage>();
            client.SendHook = m => { sent.Add(m); return Task.FromResult(0); };
            var logged = new List<string>();
            var events = new List<string>();
            client.sessionOpened.AddListener(s => { throw new InvalidOperationException("a listener's bug"); });
            client.shotStarted.AddListener(s => events.Add("started " + s.EventId));
            client.error.AddListener(m => events.Add("error " + m));
            // RGB8: the screen cannot show it and throws too
            client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = 2, Height = 2, FrameFormat = FrameFormat.Rgb8 }));
            client.Deliver(new ServerMessage(ServerKind.ShotStarted, new ShotStarted { EventId = id }));
            Debug.Sink = (t, m) => { if (t == LogType.Exception) logged.Add(m); };
            try { client.Pump(0); }
            finally { Debug.Sink = (t, m) => { }; }
            Eq(1, sent.Count, "the queued cue went out");
            Eq(id, sent[0].AsCue.EventId, "the cue");
            Eq(2, events.Count, string.Join("|", events));
            Check(events[0].StartsWith("error ShotStreamClient: the screen cannot show this session") && events[0].Contains("RGBA8"), events[0]);
            Eq("started " + id, events[1], "the next event is still dispatched");
            Check(logged.Count == 1 && logged[0].Contains("a listener's bug"), "the listener's exception is logged: " + string.Join("|", logged));
        });
        Run("client acks at once when its screen is not active", () =>
        {
            var go = new GameObject("inactive");
            var client = go.AddComponent<ShotStreamClient>();
            var screen = go.AddComponent<ShotStreamScreen>();
            client.Screen = screen;
            var sent = new List<ClientMessage>();
            client.SendHook = m => { sent.Add(m); return Task.FromResult(0); };
            var px = new byte[2 * 2 * 2 * 4];
            client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = 2, Height = 2, Fps = 16, FrameFormat = FrameFormat.Rgba8, MaxChunksInFlight = 1, FramesFirstChunk = 2, FramesPerChunk = 2 }));
            client.Deliver(new ServerMessage(ServerKind.Chunk, new FrameChunk { ChunkSeq = 4, NumFrames = 2, Width = 2, Height = 2, FrameFormat = FrameFormat.Rgba8 }), (byte[])px.Clone());
            client.Pump(0);
            Eq(0, sent.Count, "an active screen: the ack waits for the chunk's last frame");
            screen.enabled = false;  // its Update stops: nothing will present that frame
            client.Pump(0);
            Check(sent.Count == 1 && sent[0].AsAck.ChunkSeq == 4, "the pending ack goes out");
            client.Deliver(new ServerMessage(ServerKind.Chunk, new FrameChunk { ChunkSeq = 5, NumFrames = 2, Width = 2, Height = 2, FrameFormat = FrameFormat.Rgba8 }), (byte[])px.Clone());
            client.Pump(0);
            Check(sent.Count == 2 && sent[1].AsAck.ChunkSeq == 5, "acked on receipt");
            Eq(2L, screen.PushedFrames, "no frames pushed to a screen that does not present them");
        });
        Run("director raises its events under the game event's name", () =>
        {
            var go = new GameObject("director events");
            var client = go.AddComponent<ShotStreamClient>();
            client.SendHook = m => Task.FromResult(0);
            var director = go.AddComponent<ShotStreamDirector>();
            director.PromptMap = Map();
            director.Client = client;  // an enabled director listens to its client
            var log = new List<string>();
            director.shotStarted.AddListener(g => log.Add("started " + g));
            director.shotFinished.AddListener(g => log.Add("finished " + g));
            director.error.AddListener((g, m) => log.Add("error " + g + ": " + m));
            string enter = director.Fire("enter", P("character", "Ada"));
            string calm = director.Fire("calm");
            client.Deliver(new ServerMessage(ServerKind.ShotStarted, new ShotStarted { EventId = enter }));
            client.Deliver(new ServerMessage(ServerKind.ShotStarted, new ShotStarted { EventId = "someone-else" }));
            client.Deliver(new ServerMessage(ServerKind.ShotFinished, new ShotFinished { EventId = enter }));
            client.Deliver(new ServerMessage(ServerKind.ShotFinished, new ShotFinished { EventId = enter }));  // forgotten once finished
            client.Deliver(new ServerMessage(ServerKind.Error, new ServerError { Code = 3, Message = "prompt too long", EventId = calm }));
            client.Pump(0);
            Eq("started enter|finished enter|error calm: prompt too long", string.Join("|", log), "events");
            director.FireEvent("nope");
            Check(log.Count == 4 && log[3].StartsWith("error nope: ") && log[3].Contains("unknown event"), string.Join("|", log));
            string again = director.Fire("calm");
            client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = 2, Height = 2, FrameFormat = FrameFormat.Rgba8 }));
            client.Pump(0);
            // the session ends (a reconnect follows): its cues are gone, and so are their names
            typeof(ShotStreamClient).GetMethod("EndSession", BindingFlags.Instance | BindingFlags.NonPublic).Invoke(client, new object[] { "connection lost" });
            client.Deliver(new ServerMessage(ServerKind.ShotStarted, new ShotStarted { EventId = again }));
            client.Pump(0);
            Eq(4, log.Count, "a cue of an ended session is not reported: " + string.Join("|", log));
        });
        Run("director fires a cue through the client", () =>
        {
            var go = new GameObject("director");
            var client = go.AddComponent<ShotStreamClient>();
            var sent = new List<ClientMessage>();
            client.SendHook = m => { sent.Add(m); return Task.FromResult(0); };
            var director = go.AddComponent<ShotStreamDirector>();
            director.Client = client; director.PromptMap = Map();
            string id = director.Fire("enter", P("character", "Ada"));
            Eq(1, sent.Count, "sent");
            Eq(ClientKind.Cue, sent[0].Kind, "kind");
            var cue = sent[0].AsCue;
            Eq(id, cue.EventId, "event id");
            Eq("Ada enters the hall", cue.Prompt, "prompt");
            Eq(3u, cue.NumChunks, "chunks");
            Eq(CueMode.Cut, cue.Mode, "mode");
            Eq("enter", cue.Tags.Count == 1 ? cue.Tags[0] : null, "tag");
            var back = ClientMessage.FromJson(sent[0].ToJson());  // the JSON the gateway gets
            Eq("Ada enters the hall", back.AsCue.Prompt, "json prompt");
            Eq(CueMode.Cut, back.AsCue.Mode, "json mode");
            Check(sent[0].ToJson().Contains(ProtoEnums.Name(CueMode.Cut)), sent[0].ToJson());
            string id2 = director.Fire("calm");
            Check(id2 != id, "fresh event ids");
            Eq(CueMode.Wait, sent[1].AsCue.Mode, "wait mode");
            Eq(0, sent[1].AsCue.Tags.Count > 0 ? 0 : 1, "tagged");
            Throws<ArgumentException>(() => director.Fire("enter"), "missing param");
            Throws<KeyNotFoundException>(() => director.Fire("nope"), "unknown");
            Eq(2, sent.Count, "failed fires send nothing");
            Throws<InvalidOperationException>(() => new GameObject().AddComponent<ShotStreamDirector>().Fire("enter"), "no client");
        });
        Run("client open message from serialized settings", () =>
        {
            var client = new GameObject().AddComponent<ShotStreamClient>();
            client.GlobalCaption = "a castle"; client.Seed = 42; client.Transport = ShotTransport.SharedMemory;
            var open = client.BuildOpen();
            Eq(FrameFormat.Rgba8, open.FrameFormat, "format");
            Eq(Transport.SharedMemory, open.Transport, "transport");
            Eq(42UL, open.Seed, "seed");
            Eq("a castle", open.GlobalCaption, "caption");
            Eq(ShotDecoder.ServerDefault, client.Decoder, "default decoder: the server's");
            Eq(FrameDecoder.Unspecified, open.Decoder, "server default: Unspecified");
            Check(!ClientMessage.Open(open).ToJson().Contains("decoder"), "the default decoder is left out of open");
            client.Decoder = ShotDecoder.Tae;
            Eq(FrameDecoder.Tae, client.BuildOpen().Decoder, "tae");
            Check(ClientMessage.Open(client.BuildOpen()).ToJson().Contains("\"decoder\":\"DECODER_TAE\""), "open carries DECODER_TAE");
            client.Decoder = ShotDecoder.Wan;
            Eq(FrameDecoder.Wan, client.BuildOpen().Decoder, "wan");
            Eq("ws://127.0.0.1:50052/v1/direct", client.ServerUrl, "default url");
            var p = client.ReconnectPolicy;
            Check(p.DelayFor(0) == TimeSpan.FromSeconds(0.25) && p.DelayFor(20) == TimeSpan.FromSeconds(10) && p.MaxRetries == 5, "reconnect policy");
        });
        Run("client dispatches events on the main thread and acks after presentation", () =>
        {
            var go = new GameObject("client");
            var client = go.AddComponent<ShotStreamClient>();
            var screen = go.AddComponent<ShotStreamScreen>();
            client.Screen = screen;
            var sent = new List<ClientMessage>();
            client.SendHook = m => { sent.Add(m); return Task.FromResult(0); };
            var log = new List<string>();
            client.sessionOpened.AddListener(s => log.Add("opened " + s.SessionId));
            client.shotStarted.AddListener(s => log.Add("started " + s.EventId));
            client.shotFinished.AddListener(s => log.Add("finished " + s.EventId));
            client.error.AddListener(m => log.Add("error " + m));
            client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s1", Width = 2, Height = 2, Fps = 16, FrameFormat = FrameFormat.Rgba8, MaxChunksInFlight = 1, FramesFirstChunk = 2, FramesPerChunk = 2 }));
            client.Deliver(new ServerMessage(ServerKind.ShotStarted, new ShotStarted { EventId = "e1" }));
            var px = new byte[2 * 2 * 2 * 4];
            for (int i = 0; i < px.Length; i++) px[i] = (byte)i;
            client.Deliver(new ServerMessage(ServerKind.Chunk, new FrameChunk { ChunkSeq = 7, NumFrames = 2, Width = 2, Height = 2, FrameFormat = FrameFormat.Rgba8 }), px);
            Eq(0, log.Count, "nothing dispatched off Update");
            client.Pump(10.0);
            Eq("opened s1|started e1", string.Join("|", log), "events");
            Check(screen.Texture != null && screen.Width == 2, "screen sized from session");
            Eq(0, sent.Count, "not acked before presentation");
            screen.Present(10.0);
            client.Pump(10.0);
            Eq(0, sent.Count, "not acked after first of two frames");
            screen.Present(10.0 + 1.0 / 16);
            client.Pump(10.1);
            Eq(1, sent.Count, "acked");
            Eq(ClientKind.Ack, sent[0].Kind, "ack kind");
            Eq(7UL, sent[0].AsAck.ChunkSeq, "ack seq");
            client.Deliver(new ServerMessage(ServerKind.ShotFinished, new ShotFinished { EventId = "e1" }));
            client.Deliver(new ServerMessage(ServerKind.Error, new ServerError { Code = 3, Message = "bad cue" }));
            client.Pump(11);
            Check(log.Count == 4 && log[2] == "finished e1" && log[3].Contains("bad cue"), string.Join("|", log));
        });

        // Defect 6 of issue 11: parity with the Godot client.
        Run("client Pause/Resume: the server and the screen; a session opened while paused is paused", () =>
        {
            var go = new GameObject("pause");
            var client = go.AddComponent<ShotStreamClient>();
            var screen = go.AddComponent<ShotStreamScreen>();
            client.Screen = screen;
            var sent = new List<string>();
            client.Pause();  // before any session: nothing to send yet
            Check(client.Paused && screen.Paused, "paused");
            client.Cue("a", 1);
            client.SendHook = m => { sent.Add(m.Kind.ToString()); return Task.FromResult(0); };
            client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = 2, Height = 1, Fps = 16, FrameFormat = FrameFormat.Rgba8 }));
            client.Pump(0);
            Eq("Cue,Pause", string.Join(",", sent), "the queued cue, then pause for the new session");
            client.Resume();
            Check(!client.Paused && !screen.Paused, "resumed");
            client.Pause();
            Eq("Cue,Pause,Resume,Pause", string.Join(",", sent), "sent at once while open");
            Eq("{\"pause\":{}}", ClientMessage.Pause().ToJson(), "pause JSON");
        });
        Run("client raises chunkReceived for every chunk and cueLatency once per cue", () =>
        {
            var client = new GameObject("latency").AddComponent<ShotStreamClient>();
            client.SendHook = m => Task.FromResult(0);
            client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = 2, Height = 1, FrameFormat = FrameFormat.Rgba8 }));
            client.Pump(0);
            var log = new List<string>();
            var latencies = new List<float>();
            client.chunkReceived.AddListener(c => log.Add("chunk " + c.ChunkSeq + " " + c.EventId));
            client.cueLatency.AddListener((e, ms) => { log.Add("latency " + e); latencies.Add(ms); });
            Eq(-1f, client.LastCueLatencyMs, "no latency yet");
            string id = client.Cue("a", 2);
            Thread.Sleep(60);
            for (ulong seq = 1; seq <= 2; seq++)
                client.Deliver(new ServerMessage(ServerKind.Chunk, new FrameChunk { ChunkSeq = seq, EventId = id, NumFrames = 1, Width = 2, Height = 1, FrameFormat = FrameFormat.Rgba8 }), new byte[8]);
            Thread.Sleep(300);  // dispatched later: the latency is the chunk's arrival, not its dispatch (that would be >= 360 ms)
            client.Pump(0);
            Eq("latency " + id + "|chunk 1 " + id + "|chunk 2 " + id, string.Join("|", log), "events");
            Check(latencies[0] >= 55 && latencies[0] < 340, "latency from the cue's send to the chunk's arrival: " + latencies[0]);
            Eq(latencies[0], client.LastCueLatencyMs, "last latency");
            Eq(latencies[0], client.RecentMaxCueLatencyMs, "recent max");
        });

        Run("client on WebGL says it is not supported, and does nothing", () =>
        {
            Application.PlatformForTests = RuntimePlatform.WebGLPlayer;
            try
            {
                var client = new GameObject("webgl").AddComponent<ShotStreamClient>();
                var errors = new List<string>();
                client.error.AddListener(errors.Add);
                client.Connect();
                Eq(1, errors.Count, "one error");
                Check(errors[0].StartsWith("ShotStreamClient: WebGL is not supported yet") && errors[0].Contains("ClientWebSocket"), errors[0]);
                Check(!client.IsRunning && !client.IsConnected, "no loop started");
            }
            finally { Application.PlatformForTests = RuntimePlatform.LinuxEditor; }
        });
        Run("client hands chunk buffers to the screen by reference and gets them back once their frames have left it", () =>
        {
            var go = new GameObject("by reference");
            var client = go.AddComponent<ShotStreamClient>();
            var screen = go.AddComponent<ShotStreamScreen>();
            client.Screen = screen;
            client.SendHook = m => Task.FromResult(0);
            client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = 2, Height = 1, Fps = 16, FrameFormat = FrameFormat.Rgba8, MaxChunksInFlight = 2, FramesFirstChunk = 2, FramesPerChunk = 2 }));
            client.Pump(0);
            var pools = (System.Collections.Concurrent.ConcurrentDictionary<int, System.Collections.Concurrent.ConcurrentBag<byte[]>>)typeof(ShotStreamClient)
                .GetField("pixelPools", BindingFlags.Instance | BindingFlags.NonPublic).GetValue(client);
            Func<byte[], bool> pooled = b => { System.Collections.Concurrent.ConcurrentBag<byte[]> bag; return pools.TryGetValue(b.Length, out bag) && System.Linq.Enumerable.Contains(bag, b); };
            var px1 = new byte[16]; var px2 = new byte[16];
            for (int i = 0; i < 16; i++) { px1[i] = (byte)(10 + i); px2[i] = (byte)(40 + i); }
            client.Deliver(new ServerMessage(ServerKind.Chunk, new FrameChunk { ChunkSeq = 1, NumFrames = 2, Width = 2, Height = 1, FrameFormat = FrameFormat.Rgba8 }), px1);
            client.Deliver(new ServerMessage(ServerKind.Chunk, new FrameChunk { ChunkSeq = 2, NumFrames = 2, Width = 2, Height = 1, FrameFormat = FrameFormat.Rgba8 }), px2);
            client.Pump(0);
            Check(!pooled(px1) && !pooled(px2), "both chunks are the screen's now");
            screen.Advance(0);
            Eq((byte)10, screen.Texture.RawDataForTests[0], "frame 0 straight from chunk 1's buffer");
            screen.Advance(1 / 16.0);
            Eq((byte)18, screen.Texture.RawDataForTests[0], "frame 1 (second half of the buffer)");
            Check(!pooled(px1), "chunk 1's last frame is on screen: not back yet");
            screen.Advance(1 / 16.0);
            Eq((byte)40, screen.Texture.RawDataForTests[0], "frame 2 from chunk 2's buffer");
            Check(pooled(px1) && !pooled(px2), "chunk 1 back in the pool once its frames left the screen");
            screen.OnSessionOpened(new SessionOpened { Width = 2, Height = 1, Fps = 16, FrameFormat = FrameFormat.Rgba8 });
            Check(pooled(px2), "a new session hands back what was queued or on screen");
        });
        Run("client takes: queued with cues until the session opens, events on the main thread", () =>
        {
            var client = new GameObject("takes").AddComponent<ShotStreamClient>();
            var log = new List<string>();
            client.takeStarted.AddListener(t => log.Add("started " + t.Name + " " + t.Path));
            client.takeSaved.AddListener(t => log.Add("saved " + t.Name + " " + t.Frames + " " + t.Bytes));
            var full = new List<string>();
            client.takeStarted.AddListener(t => { if (t.Quality == TakeQuality.Full) full.Add("started " + t.FullPath); });
            client.takeSaved.AddListener(t => { if (t.FullPath.Length > 0) full.Add("saved " + t.FullPath + " " + t.FullBytes); });
            client.StartTake("intro");
            string id = client.Cue("a castle at dawn", 2, false);
            client.StopTake();
            var sent = new List<ClientMessage>();
            client.SendHook = m => { sent.Add(m); return Task.FromResult(0); };
            Eq(0, sent.Count, "nothing sent before the session opens");
            client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = 2, Height = 2, FrameFormat = FrameFormat.Rgba8 }));
            client.Pump(0);
            Eq("StartTake,Cue,StopTake", string.Join(",", sent.ConvertAll(m => m.Kind.ToString())), "order kept");
            Eq("{\"startTake\":{\"name\":\"intro\"}}", sent[0].ToJson(), "start_take JSON");
            Eq(id, sent[1].AsCue.EventId, "the queued cue");
            Eq("{\"stopTake\":{}}", sent[2].ToJson(), "stop_take JSON");
            client.StartTake();
            Eq("{\"startTake\":{}}", sent[3].ToJson(), "default name: left to the server");
            client.StartTake("hd", TakeQuality.Full);
            Eq("{\"startTake\":{\"name\":\"hd\",\"quality\":\"TAKE_QUALITY_FULL\"}}", sent[4].ToJson(), "a full take");
            client.StartTake("", TakeQuality.Live);
            Eq("{\"startTake\":{}}", sent[5].ToJson(), "live: the proto default, left out");
            client.Deliver(new ServerMessage(ServerKind.TakeStarted, new TakeStarted { Name = "intro", Path = "/srv/takes/intro.mp4" }));
            client.Deliver(new ServerMessage(ServerKind.TakeSaved, new TakeSaved { Name = "intro", Path = "/srv/takes/intro.mp4", Frames = 21, Bytes = 5000000000UL }));
            client.Deliver(new ServerMessage(ServerKind.TakeStarted, new TakeStarted { Name = "hd", Path = "/srv/takes/hd.mp4", Quality = TakeQuality.Full,
                                                                                        FullPath = "/srv/takes/hd.full.mp4" }));
            client.Deliver(new ServerMessage(ServerKind.TakeSaved, new TakeSaved { Name = "hd", Path = "/srv/takes/hd.mp4", Frames = 9, Bytes = 1000,
                                                                                    FullPath = "/srv/takes/hd.full.mp4", FullBytes = 7000000000UL }));
            Eq(0, log.Count, "nothing dispatched off Update");
            client.Pump(1);
            Eq("started intro /srv/takes/intro.mp4|saved intro 21 5000000000|started hd /srv/takes/hd.mp4|saved hd 9 1000",
               string.Join("|", log), "take events");
            Eq("started /srv/takes/hd.full.mp4|saved /srv/takes/hd.full.mp4 7000000000", string.Join("|", full), "full takes: quality, full path and bytes");
        });

        Run("client snapshots, cuts at a chunk and cue logs: messages, pages merged, events on the main thread", () =>
        {
            var client = new GameObject("snapshots").AddComponent<ShotStreamClient>();
            var log = new List<string>();
            client.restored.AddListener(r => log.Add("restored " + r.NextShotIndex + " " + r.StoryFrames));
            client.cueLogReady.AddListener(l => log.Add("log " + l.GlobalCaption + " first " + l.FirstShotIndex + " dropped " + l.DroppedShots + " next " + l.NextShot + ": "
                + string.Join(",", l.Entries.ConvertAll(e => e.ShotIndex + "=" + e.Cue.Prompt + "/" + e.Chunks + (e.Cut ? "cut" : "")))));
            client.RequestSnapshot();  // queued until the session opens, like cues
            var sent = new List<ClientMessage>();
            client.SendHook = m => { sent.Add(m); return Task.FromResult(0); };
            client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = 2, Height = 2, FrameFormat = FrameFormat.Rgba8 }));
            client.Pump(0);
            Eq("{\"snapshot\":{\"waitForBoundary\":true}}", sent[0].ToJson(), "queued request: waits for the boundary by default");
            client.RequestSnapshot(false);
            Eq("{\"snapshot\":{}}", sent[1].ToJson(), "no wait: the proto default");
            string id = client.CueCutAt("a wave hits", 2, 3, "storm");
            Eq("{\"cue\":{\"eventId\":\"" + id + "\",\"prompt\":\"a wave hits\",\"tags\":[\"storm\"],\"numChunks\":3,\"mode\":\"CUE_MODE_CUT\",\"atChunk\":2}}",
               sent[2].ToJson(), "a cut at chunk 2");
            Throws<ArgumentOutOfRangeException>(() => client.CueCutAt("x", -1), "negative at chunk");
            Eq(3, sent.Count, "a refused cue is not sent");
            client.RequestCueLog();
            client.RequestCueLog();  // one on its way: asked again once it is in
            Eq("{\"cueLog\":{}}", sent[3].ToJson(), "the whole log"); Eq(4, sent.Count, "one request at a time");
            var page1 = new CueLog { GlobalCaption = "sea", FirstShotIndex = 1, DroppedShots = 0, NextShot = 3 };
            page1.Entries.Add(new CueLogEntry { Cue = new Cue { Prompt = "a" }, ShotIndex = 1, Chunks = 7, Finished = true });
            page1.Entries.Add(new CueLogEntry { Cue = new Cue { Prompt = "b" }, ShotIndex = 2, Chunks = 1, Cut = true, Finished = true });
            client.Deliver(new ServerMessage(ServerKind.CueLog, page1));
            client.Pump(0);
            Eq("{\"cueLog\":{\"fromShot\":3}}", sent[4].ToJson(), "the next page"); Eq(0, log.Count, "nothing raised mid-log");
            var page2 = new CueLog { GlobalCaption = "sea" };
            page2.Entries.Add(new CueLogEntry { Cue = new Cue { Prompt = "c" }, ShotIndex = 3, Chunks = 2 });
            client.Deliver(new ServerMessage(ServerKind.CueLog, page2));
            client.Deliver(new ServerMessage(ServerKind.Restored, new SnapshotRestored { NextShotIndex = 4, StoryFrames = 90 }));
            client.Pump(0);
            Eq("log sea first 1 dropped 0 next 0: 1=a/7,2=b/1cut,3=c/2|restored 4 90", string.Join("|", log), "merged log, then restored");
            Eq("{\"cueLog\":{}}", sent[5].ToJson(), "the second RequestCueLog, once the first was in"); Eq(6, sent.Count, "sent");
            var bad = new CueLog { NextShot = 1 };
            bad.Entries.Add(new CueLogEntry { ShotIndex = 5 });
            var errors = new List<string>();
            client.error.AddListener(e => errors.Add(e));
            Debug.Sink = (t, m) => { };
            client.Deliver(new ServerMessage(ServerKind.CueLog, bad));
            client.Pump(0);
            Check(errors.Count == 1 && errors[0].Contains("cue log dropped") && errors[0].Contains("does not move past"), "a page going back: " + string.Join("|", errors));
            Eq(6, sent.Count, "and no request for it");
            // a session that continues a story keeps the story's decoder: none is asked for
            client.Decoder = ShotDecoder.Tae;
            Eq(FrameDecoder.Tae, client.BuildOpen().Decoder, "a new story asks for its decoder");
            client.GlobalCaption = "Sea.";
            client.Seed = 9;
            client.ContinueFromSnapshot = new byte[] { 1, 2, 3 };
            Eq(FrameDecoder.Unspecified, client.BuildOpen().Decoder, "a continued story: the snapshot's decoder");
            Eq("{\"open\":{\"protocolVersion\":1,\"clientName\":\"unity\",\"frameFormat\":\"FRAME_FORMAT_RGBA8\",\"transport\":\"TRANSPORT_INLINE\",\"maxChunksInFlight\":2}}",
               ClientMessage.Open(client.BuildOpen()).ToJson(), "nor its caption and seed");
            Eq(null, client.BuildOpen().Snapshot, "the snapshot's parts are added when connecting");
            Throws<ArgumentException>(() => client.ContinueFromSnapshot = new byte[0], "an empty snapshot");
            client.ContinueFromSnapshot = null;
            Throws<ArgumentOutOfRangeException>(() => client.MaxSnapshotBytes = 0, "max 0");
            Throws<ArgumentException>(() => client.Fork(""), "fork without a session id");
        });
        Run("snapshot files: atomic save under persistentDataPath, load, names, links refused", () =>
        {
            string dir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "shotstream-snapfile-" + Guid.NewGuid().ToString("N"));
            Application.PersistentDataPathForTests = System.IO.Path.Combine(dir, "persistent");
            try
            {
                var a = new byte[100000];
                for (int i = 0; i < a.Length; i++) a[i] = (byte)(i * 7 + 1);
                string path = ShotStreamSnapshotFile.Save(a, "slot1.snap");
                Eq(System.IO.Path.Combine(dir, "persistent", "slot1.snap"), path, "under persistentDataPath (created)");
                Check(ShotStreamSnapshotFile.Exists("slot1.snap"), "exists");
                Check(System.Linq.Enumerable.SequenceEqual(a, ShotStreamSnapshotFile.Load("slot1.snap")), "loaded = saved");
                var b = new byte[] { 0, 255, 3 };
                ShotStreamSnapshotFile.Save(b, "slot1.snap");  // replaces the old save
                Eq("0,255,3", string.Join(",", ShotStreamSnapshotFile.Load("slot1.snap")), "overwritten");
                Eq("slot1.snap", string.Join(",", System.Linq.Enumerable.Select(System.IO.Directory.GetFileSystemEntries(Application.persistentDataPath), System.IO.Path.GetFileName)),
                   "no temporary file left");
                foreach (var name in new[] { "", "../x.snap", "a/b", "a\\b", ".hidden", "c:x", new string('a', 129), "sp ace" })
                    Throws<ArgumentException>(() => ShotStreamSnapshotFile.Save(b, name), "bad name " + name);
                Throws<System.IO.FileNotFoundException>(() => ShotStreamSnapshotFile.Load("missing.snap"), "no such save");
                Throws<ArgumentException>(() => ShotStreamSnapshotFile.Save(new byte[0], "e.snap"), "empty");
                // links: a planted one where the save goes is refused, not followed (the file it points to stays as it was)
                string victim = System.IO.Path.Combine(dir, "victim");
                System.IO.File.WriteAllText(victim, "untouched");
                Symlink(victim, System.IO.Path.Combine(Application.persistentDataPath, "link.snap"));
                Symlink(System.IO.Path.Combine(dir, "nowhere"), System.IO.Path.Combine(Application.persistentDataPath, "dangling.snap"));
                var e1 = Throws<System.IO.IOException>(() => ShotStreamSnapshotFile.Save(b, "link.snap"), "save through a link");
                Check(e1.Message.Contains("symbolic link"), e1.Message);
                Throws<System.IO.IOException>(() => ShotStreamSnapshotFile.Load("link.snap"), "load through a link");
                Throws<System.IO.IOException>(() => ShotStreamSnapshotFile.Save(b, "dangling.snap"), "save through a dangling link");
                Eq("untouched", System.IO.File.ReadAllText(victim), "the link's target");
                Check(!System.IO.File.Exists(System.IO.Path.Combine(dir, "nowhere")), "nothing created through the dangling link");
                Check(ShotStreamSnapshotFile.Delete("link.snap") && System.IO.File.Exists(victim), "deleting a link deletes the link");
                Check(!ShotStreamSnapshotFile.Delete("link.snap"), "gone");
                // the folder overloads (any thread)
                string other = System.IO.Path.Combine(dir, "saves");
                ShotStreamSnapshotFile.Save(a, other, "x.snap");
                Check(System.Linq.Enumerable.SequenceEqual(a, ShotStreamSnapshotFile.Load(other, "x.snap")), "explicit folder");
            }
            finally
            {
                Application.PersistentDataPathForTests = null;
                System.IO.Directory.Delete(dir, true);
            }
        });

        Run("client reports a refused connection after its retries and closes", () =>
        {
            var client = new GameObject().AddComponent<ShotStreamClient>();
            var errors = new List<string>();
            client.error.AddListener(m => errors.Add(m));
            client.ServerUrl = "http://example.invalid/";
            client.Connect();
            Check(errors.Count == 1 && errors[0].Contains("bad server URL") && !client.IsRunning, "bad url: " + string.Join("|", errors));
            errors.Clear();
            var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
            listener.Start();
            int port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();  // nothing listens on this port now
            client.ServerUrl = "ws://127.0.0.1:" + port + "/v1/direct";
            client.ReconnectPolicy = new ReconnectPolicy { InitialDelay = TimeSpan.FromMilliseconds(10), MaxDelay = TimeSpan.FromMilliseconds(20), MaxRetries = 1 };
            client.Connect();
            Check(client.IsRunning || errors.Count == 0, "running");
            var sw = Stopwatch.StartNew();
            while (client.IsRunning && sw.Elapsed < TimeSpan.FromSeconds(20)) System.Threading.Thread.Sleep(10);
            Check(!client.IsRunning, "loop gave up");
            client.Pump(0);
            Eq(2, errors.Count, "the first failure, then giving up: " + string.Join("|", errors));
            Check(errors[0].Contains("could not connect") && errors[0].EndsWith("(retrying)"), errors[0]);
            Check(errors[1].Contains("gave up after 2 failures in a row: could not connect"), errors[1]);
            Eq(false, client.IsConnected, "not connected");
            string id = client.Cue("a shot", 1, false);  // queued until a session opens
            Check(id.StartsWith("unity-"), id);
            client.Close();
        });

        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }

    static void Symlink(string target, string link)
    {
        using (var ln = Process.Start(new ProcessStartInfo("ln", "-s " + target + " " + link) { UseShellExecute = false }))
        {
            ln.WaitForExit();
            if (ln.ExitCode != 0) throw new Exception("ln -s failed");
        }
    }

    // What UnitySynchronizationContext does: continuations posted from anywhere run on the main thread, in the player loop.
    sealed class MainThreadContext : SynchronizationContext
    {
        readonly System.Collections.Concurrent.ConcurrentQueue<KeyValuePair<SendOrPostCallback, object>> queue =
            new System.Collections.Concurrent.ConcurrentQueue<KeyValuePair<SendOrPostCallback, object>>();
        public override void Post(SendOrPostCallback d, object state) { queue.Enqueue(new KeyValuePair<SendOrPostCallback, object>(d, state)); }
        public void RunPending()
        {
            KeyValuePair<SendOrPostCallback, object> item;
            while (queue.TryDequeue(out item)) item.Key(item.Value);
        }
    }

    // ---- against tests/unity/fake_gateway.py ----

    static readonly object outLock = new object();
    static void Out(string line) { lock (outLock) { Console.WriteLine(line.Replace('\n', ' ')); Console.Out.Flush(); } }

    // Pumps like Unity's Update loop (the client, then the screen) until `done` or the deadline.
    static bool PumpUntil(ShotStreamClient client, ShotStreamScreen screen, Func<bool> done, double seconds, bool present = true)
    {
        var sw = Stopwatch.StartNew();
        while (!done())
        {
            if (sw.Elapsed.TotalSeconds > seconds) return false;
            double now = Time.realtimeSinceStartupAsDouble;
            client.Pump(now);
            if (present) screen.Present(now);
            Thread.Sleep(5);
        }
        return true;
    }

    // What Unity does to a component: its message methods are private and found by name.
    static void Message(object component, string name)
    {
        component.GetType().GetMethod(name, BindingFlags.Instance | BindingFlags.NonPublic).Invoke(component, null);
    }

    static int Fake(string scenario, string url)
    {
        Debug.Sink = (t, m) => { if (t == LogType.Exception || t == LogType.Error) Out("LOG " + t + " " + m); };
        var go = new GameObject("fake");
        var client = go.AddComponent<ShotStreamClient>();
        var screen = go.AddComponent<ShotStreamScreen>();
        client.Screen = screen;
        client.ServerUrl = url;
        client.MaxChunksInFlight = 1;
        Func<int, ReconnectPolicy> retries = n => new ReconnectPolicy { InitialDelay = TimeSpan.FromMilliseconds(10), MaxDelay = TimeSpan.FromMilliseconds(50), MaxRetries = n };
        client.ReconnectPolicy = retries(2);
        int opened = 0, closed = 0;
        client.sessionOpened.AddListener(s => { opened++; Out("OPENED " + s.SessionId + " " + ProtoEnums.Name(s.Transport)); });
        client.sessionClosed.AddListener(r => { closed++; Out("CLOSED " + r); });
        client.error.AddListener(m => Out("ERROR " + m));
        var startedIds = new List<string>();
        client.shotStarted.AddListener(s => { startedIds.Add(s.EventId); Out("STARTED " + s.EventId); });
        int resumed = 0;
        client.storyResumed.AddListener(r => { resumed++; Out("RESUMED " + r.FromSnapshot + " next " + r.NextShotIndex + " session " + r.SessionId
            + " recued " + string.Join(",", r.Recued) + " reason " + r.Reason); });
        Func<bool> stopped = () => PumpUntil(client, screen, () => !client.IsRunning, 30);
        bool ok;
        switch (scenario)
        {
            case "ring-fallback":  // the ring the server announces cannot be mapped here
                client.Transport = ShotTransport.SharedMemory;
                client.Connect();
                ok = PumpUntil(client, screen, () => opened == 1 && screen.PushedFrames == 2, 20);
                break;
            case "drop-storm":     // every session is dropped; the first three deliver a chunk first
                client.ReconnectPolicy = retries(1);
                client.Connect();
                ok = stopped();
                break;
            case "refused":        // HTTP 401 to every handshake
                client.ReconnectPolicy = retries(5);
                client.Connect();
                ok = stopped();
                break;
            case "open-timeout":   // the peer accepts the WebSocket and never answers open
                client.ReconnectPolicy = retries(1);
                client.OpenTimeout = TimeSpan.FromSeconds(1.5);
                client.Connect();
                ok = stopped();
                break;
            case "server-shutdown":  // closed "server shutdown", then, after the reconnect, closed "client"
            case "oversized":        // a 2 MiB message in a session of 4x4 frames
                client.Connect();
                ok = stopped();
                break;
            case "snapshot-parts":  // snapshot parts: a 1.5 MiB snapshot in 1 MiB parts, one too big, parts out of order, a small one; a paged cue log
            {
                int snapshots = 0;
                bool logged = false;
                client.MaxSnapshotBytes = 3 << 20;
                client.snapshotReady.AddListener((data, next) => { snapshots++; Out("SNAPSHOT " + data.Length + " " + CrcOf(data) + " next " + next); });
                client.cueLogReady.AddListener(l => { logged = true; Out("CUELOG first " + l.FirstShotIndex + " next " + l.NextShot + " "
                    + string.Join(",", l.Entries.ConvertAll(e => e.ShotIndex + "=" + e.Cue.Prompt + "/" + e.Chunks + "/" + ProtoEnums.Name(e.Cue.Mode) + "@" + e.Cue.AtChunk))); });
                client.RequestSnapshot(false);
                client.RequestCueLog();
                client.Connect();
                ok = PumpUntil(client, screen, () => snapshots == 2 && logged, 30);
                break;
            }
            case "fork":  // Fork(id) opens with the fork (and no decoder); restored is raised; the next plain Connect forks nothing
            {
                int restoredCount = 0;
                client.restored.AddListener(r => { restoredCount++; Out("RESTORED " + r.NextShotIndex + " " + r.StoryFrames); });
                client.Decoder = ShotDecoder.Tae;
                client.Seed = 11;
                client.Fork("fake-other", false);
                ok = PumpUntil(client, screen, () => restoredCount == 1, 20);
                client.Close();
                client.Connect();
                ok = ok && PumpUntil(client, screen, () => opened == 2, 20);
                break;
            }
            case "resume-snapshot":  // a drop mid-shot 1 after the snapshot of shot 0's end: the story continues that snapshot
            case "resume-new-story":  // a drop mid-shot 0, no snapshot yet: a new story with the same caption and seed
            case "resume-draining":   // closed "server draining": resumes; then the game's Close ends it for good
            {
                client.GlobalCaption = "Sea.";
                client.Seed = 5;
                var first = client.PlayShot("a", 2);
                string second = scenario == "resume-new-story" ? null : client.Cue("b", 3);
                client.Connect();
                ShotPlayback cut = null;
                if (second != null)
                {
                    ok = PumpUntil(client, screen, () => startedIds.Contains(second), 20);
                    if (scenario == "resume-snapshot")
                    {
                        cut = client.PlayShotCutAt("c", 1);  // unity-3: a cut still queued when the server goes
                        client.Cue("d", 2);                    // unity-4: queued after the cut
                    }
                }
                else
                {
                    ok = PumpUntil(client, screen, () => startedIds.Contains("unity-1"), 20);
                    client.Cue("b", 3);  // unity-2: queued when the server goes
                }
                ok = ok && PumpUntil(client, screen, () => resumed == 1 && opened == 2, 20);
                Out("AFTER-RESUME first " + (first.Failed ? "failed" : first.IsDone ? "done" : "pending") + " cut " + (cut == null ? "-" : cut.Failed ? "failed" : "pending")
                    + " kept " + (client.LastStorySnapshot == null ? "none" : client.LastStorySnapshot.Length + " next " + client.LastStorySnapshotNextShot));
                var reply = Task.Run(() => Console.In.ReadLine());  // "replayed": the gateway has what the new session must get
                ok = ok && PumpUntil(client, screen, () => reply.IsCompleted, 20) && reply.Result == "replayed";
                if (scenario == "resume-snapshot") Out("REMEMBERED " + client.RememberedCues);
                if (scenario == "resume-draining")
                {
                    client.Close();
                    reply = Task.Run(() => Console.In.ReadLine());  // "closed": the gateway saw the connection go
                    ok = ok && PumpUntil(client, screen, () => reply.IsCompleted, 20) && reply.Result == "closed";
                    client.Pump(Time.realtimeSinceStartupAsDouble);
                }
                break;
            }
            case "resume-off":  // ResumeStory off: a drop mid-shot starts a new story, nothing cued again
                client.ResumeStory = false;
                client.GlobalCaption = "Sea.";
                client.Cue("a", 2);
                client.Connect();
                ok = PumpUntil(client, screen, () => opened == 2, 20);
                break;
            case "stale-ack": ok = StaleAck(client, screen, () => opened); break;
            case "lifecycle": ok = Lifecycle(client, screen, () => opened); break;
            default: Out("unknown scenario " + scenario); return 2;
        }
        client.Pump(Time.realtimeSinceStartupAsDouble);  // what the loop queued before it ended
        Out("END running " + client.IsRunning + " opened " + opened + " closed " + closed);
        client.Close();
        Out(ok ? "DONE" : "TIMEOUT");
        return ok ? 0 : 1;
    }

    // Session 1's chunk 7 is pushed but not yet presented (its ack pending) when session 1 drops; the client
    // reconnects, and the frames of chunk 7 finish playing after session 2 is live but before its opened event
    // is dispatched. Chunk 7's ack must not go to session 2; session 2's own chunk is acked as usual.
    static bool StaleAck(ShotStreamClient client, ShotStreamScreen screen, Func<int> opened)
    {
        client.Connect();
        if (!PumpUntil(client, screen, () => screen.PushedFrames == 2, 20, present: false)) return false;
        var live = new ManualResetEventSlim();
        var release = new ManualResetEventSlim();
        client.AfterConnectForTest = () => { live.Set(); release.Wait(TimeSpan.FromSeconds(30)); };
        Out("PUSHED");  // the gateway drops session 1 now
        if (!live.Wait(TimeSpan.FromSeconds(20))) return false;
        client.AfterConnectForTest = null;
        double t = Time.realtimeSinceStartupAsDouble;
        screen.Present(t);
        screen.Present(t + 1.0);
        Out("PRESENTED " + screen.PresentedFrameIndex);
        client.Pump(t + 1.0);  // chunk 7's ack is due now
        release.Set();
        var reply = Task.Run(() => Console.In.ReadLine());  // "acked": the gateway has session 2's ack
        return PumpUntil(client, screen, () => reply.IsCompleted && opened() == 2, 20) && reply.Result == "acked";
    }

    // Connect On Start: OnEnable connects; OnDisable returns at once (close sent, the loop stops once it is out) and nothing the
    // old session still delivers reaches the listeners.
    static bool Lifecycle(ShotStreamClient client, ShotStreamScreen screen, Func<int> opened)
    {
        Message(client, "OnEnable");
        if (!PumpUntil(client, screen, () => opened() == 1, 20)) return false;
        var sw = Stopwatch.StartNew();
        Message(client, "OnDisable");
        Out("DISABLED running " + client.IsRunning + " connected " + client.IsConnected + " session " + (client.Session != null)
            + " blocked " + (sw.Elapsed.TotalSeconds < 1 ? "no" : "yes"));
        var reply = Task.Run(() => Console.In.ReadLine());  // "closed": the gateway got `close` and answered
        bool ok = PumpUntil(client, screen, () => reply.IsCompleted, 20) && reply.Result == "closed";
        client.Pump(Time.realtimeSinceStartupAsDouble);
        return ok;
    }
}
