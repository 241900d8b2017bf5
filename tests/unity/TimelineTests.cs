// Runtime/Timeline under mono: a ShotStream track with clips, driven as Timeline drives it (each frame the director's
// time advances at its graph's speed and the track mixer's ProcessFrame runs with the bound ShotStreamScreen), against
// a simulated service (shots generated one after another in cue order, a shot's first chunk a latency after it starts,
// each later one ChunkSeconds after the one before, 8 frames a chunk at 16 fps, at most 4 chunks unacked; a cut ends the
// shot in progress at its next chunk boundary, or after its at_chunk-th chunk). Built by
// tests/test_unity_package.py against stubs/UnityEngineStub.cs (Playables) and stubs/TimelineStub.cs.
// Prints "ok NAME" / "FAIL NAME: ..." and "N passed, M failed" last; exit 1 on failure.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading.Tasks;
using ShotStream.Core;
using ShotStream.Timeline;
using ShotStream.Unity;
using UnityEngine;
using UnityEngine.Playables;
using Debug = UnityEngine.Debug;

static class TimelineTests
{
    static int passed, failed;
    static void Check(bool cond, string what) { if (!cond) throw new Exception("check failed: " + what); }
    static void Near(double expected, double actual, double tolerance, string what)
    {
        if (!(Math.Abs(expected - actual) <= tolerance)) throw new Exception(what + ": expected " + expected + " +/- " + tolerance + ", got " + actual);
    }
    static void Run(string name, Action test)
    {
        try { test(); passed++; Console.WriteLine("ok   " + name); }
        catch (Exception e) { failed++; Console.WriteLine("FAIL " + name + ": " + e); }
    }

    // The scene and the timeline: client + screen + director on one GameObject, a track bound to the screen.
    sealed class Rig
    {
        public const double Dt = 1 / 60.0;
        public ShotStreamClient Client;
        public ShotStreamScreen Screen;
        public PlayableDirector Director;
        public ShotStreamTrack Track;
        public ShotStreamTrackMixer Mixer;
        public Playable MixerPlayable;
        public double Now;                                       // simulated real time
        public readonly List<string> Log = new List<string>();   // what happened, with director and real times
        public readonly List<string> Shown = new List<string>(); // frames on screen: "<prompt tag>#<frame in shot>"
        public Func<int, double> Latency = n => 0.4;             // seconds from the n-th shot's start (0-based) to its first chunk
        public double ChunkSeconds = 0.5;                        // seconds from one chunk of a shot to the next
        public readonly List<Cue> Cues = new List<Cue>();        // the cues sent, in order
        public readonly List<string> Finished = new List<string>();  // ShotFinished: "<tag> chunks N[ cut]"
        readonly List<Cue> queued = new List<Cue>();             // cues the service has not started
        Cue generating;                                          // the shot being generated: its next chunk at nextChunkAt
        double nextChunkAt;
        int made, unacked;                                       // chunks of the shot made; chunks not acked
        bool cutPending;                                         // a cut ends the shot in progress after its cutAt-th chunk (0: the next)
        uint cutAt;
        readonly Dictionary<string, string> tagOf = new Dictionary<string, string>();
        int cues;
        uint shotIndex;
        ulong seq;

        readonly Stopwatch real;   // live: real time drives everything

        public Rig(params KeyValuePair<double, ShotStreamShotClip>[] clips) : this(null, 2, clips) { }
        public Rig(double clipSeconds, params KeyValuePair<double, ShotStreamShotClip>[] clips) : this(null, clipSeconds, clips) { }

        // url: a live session against the service (frames and latencies real); else the simulated service below. Each clip
        // lasts clipSeconds.
        public Rig(string url, double clipSeconds, params KeyValuePair<double, ShotStreamShotClip>[] clips)
        {
            var go = new GameObject("cutscene");
            Client = go.AddComponent<ShotStreamClient>();
            Screen = go.AddComponent<ShotStreamScreen>();
            Director = go.AddComponent<PlayableDirector>();
            Client.Screen = Screen;
            Screen.StartFrames = 1;
            Screen.framePresented.AddListener(f => Shown.Add(Tag(f.EventId) + "#" + f.FrameInShot));
            Screen.shotPresented.AddListener(s => Log.Add("presented " + Tag(s.EventId) + " at " + Director.time.ToString("0.000")));
            Client.shotFinished.AddListener(f =>
            {
                string line = Tag(f.EventId) + " chunks " + f.Chunks + (f.Cut ? " cut" : "");
                Finished.Add(line);
                if (real != null) Log.Add("finished " + line);
            });
            if (url != null)
            {
                real = Stopwatch.StartNew();
                Client.ServerUrl = url;
                Client.GlobalCaption = "A castle hall at night, torches flickering.";
                Client.Seed = 11;
                Client.MaxChunksInFlight = 2;
                Client.sessionOpened.AddListener(o => Log.Add("opened " + o.Width + "x" + o.Height + " fps " + o.Fps + " frames/chunk " + o.FramesPerChunk));
                Client.error.AddListener(e => Log.Add("error " + e));
                Client.cueLatency.AddListener((e, ms) => Log.Add("latency " + Tag(e) + " " + ms.ToString("0") + " ms"));
                Time.Clock = () => real.Elapsed.TotalSeconds;
                Client.Connect();
                while (Client.Session == null && real.Elapsed.TotalSeconds < 60) { Client.Pump(0); System.Threading.Thread.Sleep(5); }
                if (Client.Session == null) throw new Exception("no session: " + string.Join("|", Log));
            }
            else Client.SendHook = m =>
            {
                if (m.Kind == ClientKind.Cue)
                {
                    var c = m.AsCue;
                    Cues.Add(c);
                    tagOf[c.EventId] = c.Prompt.Split(' ')[0];
                    Log.Add("cue " + tagOf[c.EventId] + " " + c.Mode + (c.AtChunk > 0 ? "@" + c.AtChunk : "") + " at " + Director.time.ToString("0.000"));
                    // the service: shots are generated one after another, in cue order; a cut drops the cues not started yet
                    // and ends the shot in progress
                    if (c.Mode == CueMode.Cut)
                    {
                        queued.Clear();
                        if (generating != null) { cutPending = true; cutAt = c.AtChunk; }
                    }
                    queued.Add(c);
                }
                else if (m.Kind == ClientKind.Ack) unacked--;
                return Task.FromResult(0);
            };
            if (url == null)
            {
                Client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = 2, Height = 1, Fps = 16, FrameFormat = FrameFormat.Rgba8,
                    MaxChunksInFlight = 4, FramesFirstChunk = 8, FramesPerChunk = 8 }));
                Client.Pump(0);
            }
            Track = ScriptableObject.CreateInstance<ShotStreamTrack>();
            var map = ScriptableObject.CreateInstance<ShotPromptMap>();
            map.Add("enter", "Enter: {character} walks into the hall", 1, false).Add("dragon", "Dragon lands before {character}", 1, true);
            Track.PromptMap = map;
            foreach (var kv in clips)
            {
                var clip = Track.CreateClip<ShotStreamShotClip>();
                clip.start = kv.Key;
                clip.duration = clipSeconds;
                clip.asset = kv.Value;
                clip.displayName = "clip@" + kv.Key;
            }
            var graph = PlayableGraph.CreateForTests(Director);
            Director.GraphForTests = graph;
            MixerPlayable = Track.CreateTrackMixer(graph, go, clips.Length);
            graph.AddRootForTests(MixerPlayable);
            Mixer = ((ScriptPlayable<ShotStreamTrackMixer>)MixerPlayable).GetBehaviour();
            if (real == null) Time.Clock = () => Now;
        }

        // The clip a cue belongs to: the first word of its prompt.
        string Tag(string eventId)
        {
            string tag;
            if (eventId != null && tagOf.TryGetValue(eventId, out tag)) return tag;
            foreach (var slot in Mixer.Slots)
                if (slot.Playback != null && slot.Playback.EventId == eventId) return tagOf[eventId] = slot.Clip.Prompt.Split(' ')[0];
            return "?" + eventId;
        }

        // One player-loop frame: Timeline (director time at its graph's speed, then the mixer), the service, the client, the screen.
        public void Frame()
        {
            double dt = Dt;
            if (real != null)
            {
                System.Threading.Thread.Sleep(5);
                double t = real.Elapsed.TotalSeconds;
                dt = t - Now;
                Now = t;
                Director.time += dt * MixerPlayable.GetSpeed();
                Mixer.ProcessFrame(MixerPlayable, default(FrameData), Screen);
                Client.Pump(Now);
                Screen.Advance(dt);
                return;
            }
            Now += Dt;
            Director.time += Dt * MixerPlayable.GetSpeed();
            Mixer.ProcessFrame(MixerPlayable, default(FrameData), Screen);
            if (generating == null && queued.Count > 0)
            {
                generating = queued[0];
                queued.RemoveAt(0);
                made = 0;
                cutPending = false;
                nextChunkAt = Now + Latency(cues++);
                Client.Deliver(new ServerMessage(ServerKind.ShotStarted, new ShotStarted { EventId = generating.EventId, ShotIndex = shotIndex }));
            }
            if (generating != null && nextChunkAt <= Now && unacked < 4)
            {
                var c = generating;
                made++;
                unacked++;
                bool last = made >= Math.Max(1, (int)c.NumChunks) || (cutPending && made >= cutAt);
                Client.Deliver(new ServerMessage(ServerKind.Chunk, new FrameChunk { ChunkSeq = ++seq, EventId = c.EventId, ShotIndex = shotIndex, NumFrames = 8,
                    Width = 2, Height = 1, FrameFormat = FrameFormat.Rgba8, LastInShot = last }), new byte[64]);
                if (last)
                {
                    generating = null;
                    Client.Deliver(new ServerMessage(ServerKind.ShotFinished, new ShotFinished { EventId = c.EventId, ShotIndex = shotIndex++, Chunks = (uint)made,
                        Frames = (uint)made * 8, Cut = cutPending }));
                }
                else nextChunkAt = Now + ChunkSeconds;
            }
            Client.Pump(Now);
            Screen.Advance(Dt);
        }

        public void RunUntil(double directorTime, double maxSeconds = 60)
        {
            double end = Now + maxSeconds;
            while (Director.time < directorTime && Now < end) Frame();
        }
    }

    static KeyValuePair<double, ShotStreamShotClip> At(double start, ShotStreamShotClip clip) { return new KeyValuePair<double, ShotStreamShotClip>(start, clip); }
    static ShotStreamShotClip Event(string name, params string[] p) { return ScriptableObject.CreateInstance<ShotStreamShotClip>().SetGameEvent(name, p); }
    static ShotStreamShotClip Prompt(string text, int chunks, bool cut) { return ScriptableObject.CreateInstance<ShotStreamShotClip>().SetPrompt(text, chunks, cut); }

    // mono TimelineTests.exe live URL: a cutscene of three clips played live against the service: a, b (7 chunks, the most the service allows, waiting)
    // and c, which cuts b. Prints LIVE lines and "LIVE CUTSCENE OK" when every shot showed, in order, with no frame lost, and c's cut,
    // cued as soon as b started, landed after exactly the chunks of b that cover b's clip (however fast or slow the service).
    static int Live(string url)
    {
        var rig = new Rig(url, 2, At(1.0, Prompt("Alpha: a knight enters the torch-lit hall", 1, false)),
                          At(3.0, Prompt("Bravo: the knight kneels before the throne", 7, false)),
                          At(5.0, Prompt("Charlie: a dragon bursts through the wall", 1, true)));
        rig.Track.MaxHoldSeconds = 120f;  // a CPU service is slow: hold as long as it takes
        var bravo = rig.Mixer.Slots[1];
        var last = rig.Mixer.Slots[2];
        // where charlie's cut must land: the chunks of bravo covering bravo's clip (2 s), the first frames_first_chunk frames,
        // each later one frames_per_chunk, at the session's fps (at most bravo's 7)
        var session = rig.Client.Session;
        double frames = 2.0 * session.Fps;
        int cutAt = frames <= session.FramesFirstChunk ? 1 : 1 + (int)Math.Ceiling((frames - session.FramesFirstChunk) / session.FramesPerChunk);
        cutAt = Math.Min(cutAt, 7);
        Console.WriteLine("LIVE charlie cuts bravo after chunk " + cutAt);
        int frame = 0, bravoStarted = -1, charlieCued = -1;
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed.TotalSeconds < 240 && !(last.Playback != null && last.Playback.IsDone))
        {
            rig.Frame();
            frame++;
            if (bravoStarted < 0 && bravo.Playback != null && bravo.Playback.Started) bravoStarted = frame;
            if (charlieCued < 0 && last.Cued) charlieCued = frame;
        }
        foreach (var line in rig.Log) Console.WriteLine("LIVE " + line);
        Console.WriteLine("LIVE shown " + string.Join(",", rig.Shown));
        Console.WriteLine("LIVE holds " + rig.Mixer.HoldTimeouts + " timeouts, director at " + rig.Director.time.ToString("0.00") + " after " + rig.Now.ToString("0.0") + " s");
        var problems = new List<string>();
        foreach (var slot in rig.Mixer.Slots)
            if (slot.Playback == null || !slot.Playback.IsDone || slot.Playback.Failed)
                problems.Add(slot.Name + " did not play to its end on screen" + (slot.Playback != null && slot.Playback.Failed ? ": " + slot.Playback.Error : ""));
        // frames: shots in clip order, each shot's frames 0, 1, 2, ... with none lost or repeated
        string previous = null;
        int next = 0;
        var order = new List<string>();
        foreach (var f in rig.Shown)
        {
            string tag = f.Substring(0, f.IndexOf('#'));
            int k = int.Parse(f.Substring(f.IndexOf('#') + 1));
            if (tag != previous) { order.Add(tag); previous = tag; next = 0; }
            if (k != next) problems.Add("frame " + f + " out of order (expected #" + next + ")");
            next = k + 1;
        }
        if (string.Join(",", order) != "Alpha:,Bravo:,Charlie:") problems.Add("shots on screen in the order " + string.Join(",", order));
        if (!rig.Finished.Contains("Bravo: chunks " + cutAt + " cut")) problems.Add("bravo was not cut after chunk " + cutAt + ": " + string.Join("|", rig.Finished));
        if (last.AtChunk != cutAt) problems.Add("charlie's cut was pinned to chunk " + last.AtChunk + ", not " + cutAt);
        // sent early: in the frame after bravo's ShotStarted was handled, not a lead time before charlie's clip
        if (bravoStarted < 0 || charlieCued != bravoStarted + 1)
            problems.Add("charlie was cued in frame " + charlieCued + ", bravo started in frame " + bravoStarted + " (expected the frame after)");
        Console.WriteLine("LIVE bravo started in frame " + bravoStarted + ", charlie cued in frame " + charlieCued + " at " + last.CuedAt.ToString("0.000"));
        if (rig.Log.Exists(l => l.StartsWith("error "))) problems.Add("errors");
        rig.Client.Close();
        foreach (var p in problems) Console.WriteLine("LIVE problem " + p);
        Console.WriteLine(problems.Count == 0 ? "LIVE CUTSCENE OK" : "LIVE CUTSCENE FAILED");
        return problems.Count == 0 ? 0 : 1;
    }

    static int Main(string[] args)
    {
        if (args.Length == 2 && args[0] == "live") return Live(args[1]);
        Debug.Sink = (t, m) => { if (t != LogType.Log) Console.WriteLine("  log " + t + ": " + m); };
        Run("clips are cued a lead ahead of their start; late frames hold the director; frames play in order", () =>
        {
            // the first shot takes 4 s to come (a cold service), the others 0.4 s
            var rig = new Rig(At(2.0, Event("enter", "character", "Ada")), At(4.0, Event("dragon", "character", "Ada")), At(7.0, Prompt("Calm: the hall empties", 1, false)));
            rig.Latency = n => n == 0 ? 4.0 : 0.4;
            rig.RunUntil(9.5);
            string log = string.Join("|", rig.Log);
            Check(rig.Log.Count == 6, log);
            // enter: the default lead (3 s) before any latency is known, so cued at once (2 - 3 < 0)
            Check(rig.Log[0] == "cue Enter: Wait at 0.017", log);
            // the timeline reached 2.0 with no frame of enter: held there until enter's first frame, 4 s after its cue
            Check(rig.Log[1].StartsWith("presented Enter: at "), log);
            Near(2.0, double.Parse(rig.Log[1].Substring("presented Enter: at ".Length)), Rig.Dt + 0.001, "held at the clip's start");
            Check(rig.Mixer.HoldTimeouts == 0 && !rig.Mixer.Holding, "held, then released");
            // dragon, a cut after enter's clip, is pinned to enter's last chunk (enter, 1 chunk, ends long before 4.0): so it is
            // cued a lead ahead like any clip, the measured latency (a few ms of real time here) + the 0.5 s margin
            Check(rig.Log[2].StartsWith("cue Dragon Cut@1 at "), log);
            Check(rig.Cues[1].AtChunk == 1 && rig.Mixer.Slots[1].AtChunk == 1, "pinned to enter's only chunk");
            Near(3.5, double.Parse(rig.Log[2].Substring("cue Dragon Cut@1 at ".Length)), 0.05, "dragon cued 0.5 s (+ latency) ahead of 4.0");
            Check(rig.Log[3].StartsWith("presented Dragon at "), log);
            Near(3.9, double.Parse(rig.Log[3].Substring("presented Dragon at ".Length)), 0.05, "dragon on screen 0.4 s after its cue, before its clip");
            Check(rig.Log[4].StartsWith("cue Calm: Wait at "), log);
            Near(6.5, double.Parse(rig.Log[4].Substring("cue Calm: Wait at ".Length)), 0.05, "calm cued 0.5 s ahead of 7.0");
            Check(rig.Log[5].StartsWith("presented Calm: at "), log);
            // every frame of every shot, once, in order (the cut shot's frames follow the ones already queued)
            var expected = new List<string>();
            foreach (var tag in new[] { "Enter:", "Dragon", "Calm:" }) for (int k = 0; k < 8; k++) expected.Add(tag + "#" + k);
            Check(string.Join(",", rig.Shown) == string.Join(",", expected), "frames on screen: " + string.Join(",", rig.Shown));
        });
        Run("a cut clip after a shot clip is pinned to the chunk of that shot its clip starts at, and cued as soon as that shot starts", () =>
        {
            // a fast service (a chunk every 0.05 s): bravo's 7 chunks would all be made long before a cut cued a lead ahead of
            // charlie (5.5) arrived; pinned to bravo's 4th chunk (8 + 3 x 8 frames at 16 fps = 2 s: bravo's clip, 4.0 to 6.0)
            // and cued when bravo starts, the cut lands there however fast the service is
            var rig = new Rig(At(1.0, Prompt("Alpha: the knight enters", 1, false)), At(4.0, Prompt("Bravo: the knight kneels", 7, false)),
                              At(6.0, Prompt("Charlie: a dragon bursts in", 1, true)));
            rig.ChunkSeconds = 0.05;
            rig.RunUntil(7.5);
            string log = string.Join("|", rig.Log);
            Check(rig.Cues.Count == 3 && rig.Cues[2].Mode == CueMode.Cut && rig.Cues[2].AtChunk == 4, "charlie cut at bravo's 4th chunk: " + log);
            Check(rig.Mixer.Slots[2].AtChunk == 4, "the slot says where it cut");
            var bravoCue = rig.Log.Find(l => l.StartsWith("cue Bravo: Wait at "));
            var charlieCue = rig.Log.Find(l => l.StartsWith("cue Charlie: Cut@4 at "));
            Check(bravoCue != null && charlieCue != null, log);
            double bravoAt = double.Parse(bravoCue.Substring("cue Bravo: Wait at ".Length));
            Near(3.5, bravoAt, 0.05, "bravo cued a lead (the measured latency + 0.5 s) ahead of 4.0");
            // bravo starts on the service in the frame of its cue (nothing else in progress): charlie goes out on the next one,
            // 2.5 s before its clip, long before bravo's 4th chunk (0.4 + 3 x 0.05 s after bravo's start)
            Near(bravoAt + Rig.Dt, double.Parse(charlieCue.Substring("cue Charlie: Cut@4 at ".Length)), 0.002, "charlie cued once bravo started");
            Check(string.Join("|", rig.Finished) == "Alpha: chunks 1|Bravo: chunks 4 cut|Charlie: chunks 1", "finished: " + string.Join("|", rig.Finished));
            // on screen: all of alpha, bravo's 4 chunks (32 frames: 2 s, its clip's length), then charlie, each once and in order
            var expected = new List<string>();
            for (int k = 0; k < 8; k++) expected.Add("Alpha:#" + k);
            for (int k = 0; k < 32; k++) expected.Add("Bravo:#" + k);
            for (int k = 0; k < 8; k++) expected.Add("Charlie:#" + k);
            Check(string.Join(",", rig.Shown) == string.Join(",", expected), "frames on screen: " + string.Join(",", rig.Shown));
            var charlieShown = rig.Log.Find(l => l.StartsWith("presented Charlie: at "));
            Check(charlieShown != null, log);
            Near(6.0, double.Parse(charlieShown.Substring("presented Charlie: at ".Length)), 0.15, "charlie on screen as its clip starts");
            Check(rig.Mixer.HoldTimeouts == 0 && !rig.Mixer.Holding, "no time-out");

            // a cut clip with no clip before it is a plain cut, cued a lead ahead
            var plain = new Rig(At(4.0, Prompt("Delta: the tower falls", 2, true)));
            plain.RunUntil(5.0);
            Check(plain.Cues.Count == 1 && plain.Cues[0].Mode == CueMode.Cut && plain.Cues[0].AtChunk == 0 && plain.Mixer.Slots[0].AtChunk == 0, string.Join("|", plain.Log));
            Check(plain.Log[0] == "cue Delta: Cut at 1.000", "the default lead (3 s) ahead: " + string.Join("|", plain.Log));

            // where a cut lands: the fewest chunks covering the time from the previous clip's start (9 frames, then 12, at 16 fps)
            var session = new SessionOpened { Fps = 16, FramesFirstChunk = 9, FramesPerChunk = 12, MaxChunksPerShot = 7 };
            Check(ShotStreamTrack.CutAtChunk(2.0, session, 7) == 3, "2 s = 32 frames: 9 + 12 + 12");
            Check(ShotStreamTrack.CutAtChunk(0.5, session, 7) == 1, "8 frames: the first chunk");
            Check(ShotStreamTrack.CutAtChunk(0.0, session, 7) == 1, "at least 1");
            Check(ShotStreamTrack.CutAtChunk(21 / 16.0, session, 7) == 2, "21 frames: exactly 2 chunks");
            Check(ShotStreamTrack.CutAtChunk(30.0, session, 7) == 7 && ShotStreamTrack.CutAtChunk(30.0, session, 2) == 2, "at most the previous shot's chunks");
            Check(ShotStreamTrack.CutAtChunk(30.0, session, 0) == 7, "the server's default: the session's most");
            Check(ShotStreamTrack.CutAtChunk(2.0, null, 7) == 0 && ShotStreamTrack.CutAtChunk(2.0, new SessionOpened(), 7) == 0, "unknown without a session");
        });
        Run("a hold ends after Max Hold Seconds and is not taken again for that clip", () =>
        {
            var rig = new Rig(At(1.0, Prompt("Slow: a very slow shot", 1, false)));
            rig.Latency = n => 30.0;
            rig.Track.MaxHoldSeconds = 2f;
            rig.RunUntil(1.5, 20);
            Check(rig.Director.time >= 1.5, "played on after the hold: " + rig.Director.time);
            Check(rig.Mixer.HoldTimeouts == 1 && !rig.Mixer.Holding, "one timeout");
            Near(1.0 + 2.0 + 0.5, rig.Now, 0.1, "held about 2 s of real time at 1.0");
        });
        Run("a shot still on screen at its clip's end holds the director just before the end until the shot has ended on screen", () =>
        {
            // a 0.5 s shot (8 frames) on a 0.25 s clip, its frames 1 s after its cue: on screen 1.017-1.517 s, its clip 1.0-1.25
            var rig = new Rig(0.25, At(1.0, Prompt("Long: a shot longer than its clip", 1, false)), At(2.0, Prompt("Next: the next shot", 1, false)));
            rig.Latency = n => n == 0 ? 1.0 : 0.1;
            var first = rig.Mixer.Slots[0];
            double furthest = 0;  // the director's furthest time while the first shot was still on screen
            while (rig.Director.time < 2.5 && rig.Now < 10)
            {
                rig.Frame();
                if (first.Playback != null && first.Playback.Presented && !first.Playback.IsDone) furthest = Math.Max(furthest, rig.Director.time);
            }
            Check(first.Playback != null && first.Playback.IsDone && !first.Playback.Failed, "the first shot ended on screen");
            Check(furthest > 1.2 && furthest < 1.25, "the timeline stayed in the first clip while its shot was on screen: " + furthest);
            Check(rig.Mixer.HoldTimeouts == 0 && !rig.Mixer.Holding, "released, no time-out");
            Near(1.517 - 1.25, rig.Now - rig.Director.time, 2 * Rig.Dt, "the director lost the time the shot ran over its clip");
            Check(rig.Log.Exists(l => l.StartsWith("presented Next: at ")), string.Join("|", rig.Log));
        });
        Run("edit mode: the client cues nothing, scrubbing previews through the editor window's session; a jump back cues again, a jump past skips", () =>
        {
            var rig = new Rig(At(5.0, Prompt("Gate: the gate opens", 1, false)), At(9.0, Prompt("Bridge: the bridge falls", 1, false)));
            rig.Track.HoldWhenLate = false;
            Application.PlayingForTests = false;
            try { rig.RunUntil(6.0); } finally { Application.PlayingForTests = true; }
            Check(rig.Log.Count == 0, "nothing cued while scrubbing: " + string.Join("|", rig.Log));
            // with the editor preview window open: entering a clip previews its shot (a cut) on the window's session, once
            var previews = new List<string>();
            Func<string, int, bool, string> preview = (p, n, cut) => { previews.Add(p + "/" + n + "/" + (cut ? "cut" : "wait")); return "editor-" + previews.Count; };
            ShotStreamEditorPreview.Register(preview);
            Application.PlayingForTests = false;
            try
            {
                rig.Director.time = 4.0;
                rig.RunUntil(6.5);   // into the gate clip (5-7)
                rig.Director.time = 7.5;
                rig.Frame();         // out of it
                rig.Director.time = 5.5;
                rig.Frame();         // back in: previewed again
                rig.Frame();
                rig.Track.PreviewWhileScrubbing = false;
                rig.Director.time = 9.5;
                rig.Frame();         // the bridge clip, with previews off
            }
            finally { Application.PlayingForTests = true; ShotStreamEditorPreview.Unregister(preview); }
            Check(string.Join("|", previews) == "Gate: the gate opens/1/cut|Gate: the gate opens/1/cut", "previews: " + string.Join("|", previews));
            Check(rig.Log.Count == 0, "the play-mode client cued nothing: " + string.Join("|", rig.Log));
            Check(!ShotStreamEditorPreview.Available, "unregistered");
            rig.Director.time = 0;
            rig.RunUntil(3.0);
            var gateCues = rig.Log.FindAll(l => l.StartsWith("cue "));
            Check(gateCues.Count == 1 && gateCues[0] == "cue Gate: Wait at 2.017", "cued 3 s (default lead) ahead: " + string.Join("|", rig.Log));
            rig.Director.time = 0.5;  // back before the cue time
            rig.RunUntil(4.6);        // the lead is now the measured latency (ms here) + 0.5 s: the gate is cued at 4.5
            var again = rig.Log.FindAll(l => l.StartsWith("cue Gate"));
            Check(again.Count == 2, "cued again: " + string.Join("|", rig.Log));
            Near(4.5, double.Parse(again[1].Substring("cue Gate: Wait at ".Length)), 0.05, "cued again a lead ahead");
            rig.Director.time = 11.5;  // past the bridge clip
            rig.Frame();
            Check(rig.Log.FindAll(l => l.StartsWith("cue Bridge")).Count == 0, "skipped: " + string.Join("|", rig.Log));
        });
        Run("a clip that cannot be resolved is reported, not cued, and the rest play", () =>
        {
            var warnings = new List<string>();
            var sink = Debug.Sink;
            Debug.Sink = (t, m) => { if (t == LogType.Warning) warnings.Add(m); };
            try
            {
                var rig = new Rig(At(1.0, Event("no_such_event")), At(2.0, Prompt("Fine: a shot", 1, false)));
                rig.Track.HoldWhenLate = false;
                rig.RunUntil(3.0);
                Check(warnings.Count == 1 && warnings[0].Contains("clip@1") && warnings[0].Contains("no_such_event"), string.Join("|", warnings));
                Check(rig.Log.Exists(l => l.StartsWith("cue Fine:")), string.Join("|", rig.Log));
                var noPrompt = ScriptableObject.CreateInstance<ShotStreamShotClip>().SetPrompt("", 1, false);
                bool threw = false;
                try { noPrompt.Resolve(null); } catch (InvalidOperationException) { threw = true; }
                Check(threw, "a prompt clip without a prompt throws");
            }
            finally { Debug.Sink = sink; }
        });
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }
}
