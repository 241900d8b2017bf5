// The Event Shots sample's script under mono, built by tests/test_unity_package.py with the legacy Input Manager and
// with -define:ENABLE_INPUT_SYSTEM against stubs/InputSystemStub.cs (a project on the new Input System only, where
// UnityEngine.Input throws), both with the Timeline package (-define:SHOTSTREAM_TIMELINE, against stubs/TimelineStub.cs
// and Runtime/Timeline), and once without it. Keys pressed through the stubs' hooks must fire the sample's game events;
// C plays the sample's Timeline cutscene (or, without Timeline, says it needs the package).
// Prints "SAMPLE OK <build>" last and exits 0, or throws.
using System;
using System.Collections.Generic;
using System.Reflection;
using ShotStream.Samples;
using ShotStream.Unity;
using UnityEngine;
#if SHOTSTREAM_TIMELINE
using UnityEngine.Playables;
#endif

static class SampleTests
{
    static void Check(bool cond, string what) { if (!cond) throw new Exception("check failed: " + what); }

    static void Call(object o, string method) { o.GetType().GetMethod(method, BindingFlags.Instance | BindingFlags.NonPublic).Invoke(o, null); }

#if ENABLE_INPUT_SYSTEM
    const string Mode = "input-system";
    static readonly UnityEngine.InputSystem.Keyboard keyboard = new UnityEngine.InputSystem.Keyboard();
    static void Press(int digit)
    {
        UnityEngine.InputSystem.Keyboard.CurrentForTests = keyboard;
        keyboard.digit1Key.PressedForTests = digit == 1;
        keyboard.digit2Key.PressedForTests = digit == 2;
        keyboard.digit3Key.PressedForTests = digit == 3;
        keyboard.tKey.PressedForTests = digit == 0;
        keyboard.cKey.PressedForTests = digit == 4;
    }
#else
    const string Mode = "legacy";
    static void Press(int digit)
    {
        KeyCode key = digit == 1 ? KeyCode.Alpha1 : digit == 2 ? KeyCode.Alpha2 : digit == 3 ? KeyCode.Alpha3 : digit == 0 ? KeyCode.T
                    : digit == 4 ? KeyCode.C : KeyCode.None;
        Input.KeyDown = k => key != KeyCode.None && k == key;
    }
#endif

#if SHOTSTREAM_TIMELINE
    const string Build = Mode;
#else
    const string Build = Mode + " no-timeline";
#endif

#if SHOTSTREAM_TIMELINE
    // C: the Timeline cutscene, against a simulated service that generates the cues' shots one after another, each chunk
    // (4 frames) as soon as it can, except enter_hall's second chunk, which comes 0.6 s late: its shot then ends on
    // screen 0.35 s after its clip. One player-loop frame is 1/60 s: the client, the screen, then the directors.
    static void Cutscene(ShotStreamClient client, ShotStreamDirector director, EventShotsSample sample)
    {
        var screen = client.gameObject.AddComponent<ShotStreamScreen>();
        client.Screen = screen;
        var cues = new List<ShotStream.Core.Cue>();
        client.SendHook = m => { if (m.Kind == ShotStream.Core.ClientKind.Cue) cues.Add(m.AsCue); return System.Threading.Tasks.Task.FromResult(0); };
        client.Deliver(new ShotStream.Core.ServerMessage(ShotStream.Core.ServerKind.Opened, new ShotStream.Core.SessionOpened { SessionId = "s", Width = 2, Height = 1,
            Fps = 16, FrameFormat = ShotStream.Core.FrameFormat.Rgba8, MaxChunksInFlight = 4, FramesFirstChunk = 4, FramesPerChunk = 4 }));
        client.Pump(0);
        int sentBefore = cues.Count;  // the three fired above went out when the session opened: left unanswered
        double now = 0;
        Time.Clock = () => now;
        var steps = new List<string>();
        sample.cutsceneStep.AddListener(step => steps.Add(step + "@" + screen.PresentedFrameIndex + "@" + now.ToString("0.00")));
        Press(4);
        Call(sample, "Update");
        Press(-1);
        Check(steps.Count == 1 && steps[0] == "start@-1@0.00", "the cutscene starts at once: " + string.Join(",", steps));
        var chunks = new List<KeyValuePair<double, ShotStream.Core.ServerMessage[]>>();  // due time, the messages
        int served = sentBefore;
        uint shot = 0;
        ulong seq = 0;
        double serviceFree = 0;
        const double dt = 1 / 60.0;
        for (int frame = 0; frame < 2000 && steps.Count < 4; frame++)
        {
            now += dt;
            while (served < cues.Count)
            {
                var c = cues[served++];
                uint n = c.NumChunks;
                for (uint k = 0; k < n; k++)
                {
                    bool stall = c.Prompt.Contains("enters the hall") && k == 1;
                    serviceFree = Math.Max(serviceFree, now) + (stall ? 0.6 : 0);
                    var msgs = new List<ShotStream.Core.ServerMessage>();
                    if (k == 0) msgs.Add(new ShotStream.Core.ServerMessage(ShotStream.Core.ServerKind.ShotStarted, new ShotStream.Core.ShotStarted { EventId = c.EventId, ShotIndex = shot }));
                    msgs.Add(new ShotStream.Core.ServerMessage(ShotStream.Core.ServerKind.Chunk, new ShotStream.Core.FrameChunk { ChunkSeq = ++seq, EventId = c.EventId,
                        ShotIndex = shot, NumFrames = 4, Width = 2, Height = 1, FrameFormat = ShotStream.Core.FrameFormat.Rgba8, LastInShot = k == n - 1 }));
                    if (k == n - 1) msgs.Add(new ShotStream.Core.ServerMessage(ShotStream.Core.ServerKind.ShotFinished, new ShotStream.Core.ShotFinished { EventId = c.EventId,
                        ShotIndex = shot, Chunks = n, Frames = 4 * n }));
                    chunks.Add(new KeyValuePair<double, ShotStream.Core.ServerMessage[]>(serviceFree, msgs.ToArray()));
                }
                shot++;
            }
            while (chunks.Count > 0 && chunks[0].Key <= now)
            {
                foreach (var m in chunks[0].Value) client.Deliver(m, m.Kind == ShotStream.Core.ServerKind.Chunk ? new byte[32] : null);
                chunks.RemoveAt(0);
            }
            client.Pump(now);
            screen.Advance(dt);
            if (frame == 10) { Press(4); Call(sample, "Update"); Press(-1); }  // C again mid-cutscene: ignored
            PlayableDirector.StepAllForTests(dt);
        }
        // the service answers only the cutscene's cues: enter_hall (2 chunks) frames 0-7, draw_sword (1) 8-11, dragon (2) 12-19;
        // on the timeline enter_hall's clip is 0-0.5 s, draw_sword's 0.5-0.75, dragon's 0.75-1.25. Each step comes with
        // the next shot's first frame on screen (the one before it ended there), the director held at the end of
        // enter_hall's clip until its late frames were shown (0.6 + 4 frames = 0.85 s, not 0.5), and the end once the
        // dragon's last frame was shown for its full time.
        string all = string.Join(",", steps);
        Check(steps.Count == 4 && steps[1].StartsWith("entered@8@") && steps[2].StartsWith("sword drawn@12@") && steps[3].StartsWith("end@19@"),
              "each step once the shot before it has ended on screen: " + all);
        double entered = double.Parse(steps[1].Split('@')[2]), sword = double.Parse(steps[2].Split('@')[2]), end = double.Parse(steps[3].Split('@')[2]);
        Check(entered >= 0.85 && entered <= 0.85 + 3 * dt, "entered when enter_hall's late frames had been shown: " + all);
        Check(Math.Abs(sword - (entered + 0.25)) <= 3 * dt, "sword drawn a shot later: " + all);
        Check(Math.Abs(end - (sword + 0.5)) <= 3 * dt, "the end two chunks later: " + all);
        Check(cues.Count == sentBefore + 3, "three cues, C again ignored: " + cues.Count);
        Check(cues[sentBefore].Prompt.Contains("enters the hall") && cues[sentBefore + 1].Prompt.Contains("draws a sword")
              && cues[sentBefore + 2].Prompt.Contains("dragon attacks"), "cued in cutscene order");
        Check(cues[sentBefore].Mode == ShotStream.Core.CueMode.Wait && cues[sentBefore + 1].Mode == ShotStream.Core.CueMode.Wait
              && cues[sentBefore + 2].Mode == ShotStream.Core.CueMode.Cut, "dragon_attacks cuts in");
        // C once more after the end: the cutscene plays again
        Press(4);
        Call(sample, "Update");
        Press(-1);
        Check(steps.Count == 5 && steps[4].StartsWith("start@"), "a second cutscene starts: " + string.Join(",", steps));
    }

    // mono SampleTests.exe live URL: the sample's Timeline cutscene (key C) against the service, with the sample's prompt
    // map (its chunk counts and cut): the shots' frames on screen in cutscene order, each shot's frames once and in
    // order, and every gameplay step after the shot before it ended on screen. Prints LIVE lines, "LIVE SAMPLE OK" last.
    static int Live(string url)
    {
        var go = new GameObject("sample live");
        var client = go.AddComponent<ShotStreamClient>();
        var screen = go.AddComponent<ShotStreamScreen>();
        var director = go.AddComponent<ShotStreamDirector>();
        client.Screen = screen;
        client.ServerUrl = url;
        client.GlobalCaption = "A torch-lit medieval castle at night.";
        client.MaxChunksInFlight = 2;
        var map = ScriptableObject.CreateInstance<ShotPromptMap>();
        map.Add("enter_hall", "{character} enters a torch-lit hall, wide shot", 2, false).Add("draw_sword", "close-up: {character} draws a glowing sword", 1, false)
           .Add("dragon_attacks", "a dragon crashes through the roof, chaos, fast camera", 3, true);
        director.Client = client;
        director.PromptMap = map;
        var sample = go.AddComponent<EventShotsSample>();
        typeof(EventShotsSample).GetField("director", BindingFlags.Instance | BindingFlags.NonPublic).SetValue(sample, director);
        var names = new Dictionary<string, string>();
        var shown = new List<string>();
        var steps = new List<string>();
        client.shotStarted.AddListener(st => names[st.EventId] = st.Tags.Count > 0 ? st.Tags[0] : st.EventId);
        screen.framePresented.AddListener(f => { string n; shown.Add((names.TryGetValue(f.EventId, out n) ? n : f.EventId) + "#" + f.FrameInShot); });
        sample.cutsceneStep.AddListener(step => steps.Add(step + "@" + shown.Count));
        client.error.AddListener(e => Console.WriteLine("LIVE error " + e));
        client.shotFinished.AddListener(f => Console.WriteLine("LIVE finished " + names[f.EventId] + " chunks " + f.Chunks + " frames " + f.Frames + (f.Cut ? " cut" : "")));
        client.Connect();
        Call(sample, "Start");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Time.Clock = () => clock.Elapsed.TotalSeconds;
        double last = 0, longest = 0;
        bool pressed = false;
        while (clock.Elapsed.TotalSeconds < 240 && !(steps.Count > 0 && steps[steps.Count - 1].StartsWith("end@")))
        {
            System.Threading.Thread.Sleep(5);
            double now = clock.Elapsed.TotalSeconds;
            if (pressed) longest = Math.Max(longest, now - last);
            client.Pump(now);
            if (!pressed && client.Session != null) { Press(4); Call(sample, "Update"); Press(-1); pressed = true; }
            screen.Advance(now - last);
            PlayableDirector.StepAllForTests(now - last);
            last = now;
        }
        client.Close();
        Console.WriteLine("LIVE steps " + string.Join(",", steps));
        Console.WriteLine("LIVE shown " + string.Join(",", shown));
        var problems = new List<string>();
        var order = new List<string>();
        var count = new Dictionary<string, int>();
        string prev = null;
        int next = 0;
        foreach (var f in shown)
        {
            string n = f.Substring(0, f.IndexOf('#'));
            int k = int.Parse(f.Substring(f.IndexOf('#') + 1));
            if (n != prev) { order.Add(n); prev = n; next = 0; }
            if (k != next) problems.Add(f + " out of order");
            next = k + 1;
            count[n] = next;
        }
        if (string.Join(",", order) != "enter_hall,draw_sword,dragon_attacks") problems.Add("shots shown in the order " + string.Join(",", order));
        // each step came once the shot before it had ended on screen: after all of its frames were shown
        Func<string, int> at = name => { var st = steps.Find(x => x.StartsWith(name + "@")); return st == null ? -1 : int.Parse(st.Substring(st.IndexOf('@') + 1)); };
        int enter = count.ContainsKey("enter_hall") ? count["enter_hall"] : 0, sword = count.ContainsKey("draw_sword") ? count["draw_sword"] : 0;
        int dragon = count.ContainsKey("dragon_attacks") ? count["dragon_attacks"] : 0;
        if (string.Join(",", steps.ConvertAll(x => x.Substring(0, x.IndexOf('@')))) != "start,entered,sword drawn,end") problems.Add("steps " + string.Join(",", steps));
        if (at("start") != 0) problems.Add("start at " + at("start"));
        // ... and at its signal's place on the timeline, the end of a clip as long as the shot: the signal comes a player-loop
        // frame after the shot ended (the hold is released then), when the screen may have shown the next shot's first
        // frames: at most 2 more than the longest loop frame's worth of video
        int slack = 2 + (int)Math.Ceiling(2 * longest * 16);
        Console.WriteLine("LIVE longest loop frame " + (longest * 1000).ToString("0") + " ms: up to " + slack + " frames of the next shot");
        if (at("entered") < enter || at("entered") > enter + slack) problems.Add("entered not right after enter_hall's " + enter + " frames: " + at("entered"));
        if (at("sword drawn") < enter + sword || at("sword drawn") > enter + sword + slack) problems.Add("sword drawn not right after draw_sword ended: " + at("sword drawn"));
        if (at("end") != enter + sword + dragon) problems.Add("end at " + at("end") + " of " + (enter + sword + dragon));
        foreach (var p in problems) Console.WriteLine("LIVE problem " + p);
        Console.WriteLine(problems.Count == 0 ? "LIVE SAMPLE OK" : "LIVE SAMPLE FAILED");
        return problems.Count == 0 ? 0 : 1;
    }
#endif

    static int Main(string[] args)
    {
#if SHOTSTREAM_TIMELINE
        if (args.Length == 2 && args[0] == "live") return Live(args[1]);
#endif
        var logs = new List<string>();
        Debug.Sink = (t, m) => logs.Add(t + " " + m);
#if ENABLE_INPUT_SYSTEM
        // the new Input System only: the legacy API throws, as Unity's does ("You are trying to read Input using the
        // UnityEngine.Input class, but you have switched active Input handling to Input System package")
        Input.KeyDown = k => { throw new InvalidOperationException("UnityEngine.Input with the Input System package active"); };
        Call(new GameObject().AddComponent<EventShotsSample>(), "Update");  // no director: nothing read
#endif
        var go = new GameObject("sample");
        var client = go.AddComponent<ShotStreamClient>();  // never connected: its cues wait for a session
        var director = go.AddComponent<ShotStreamDirector>();
        var map = ScriptableObject.CreateInstance<ShotPromptMap>();
        map.Add("enter_hall", "{character} enters the hall", 2, false).Add("draw_sword", "{character} draws a sword", 1, false)
           .Add("dragon_attacks", "a dragon attacks {character}", 2, true);
        director.Client = client;
        director.PromptMap = map;
        var sample = go.AddComponent<EventShotsSample>();
        typeof(EventShotsSample).GetField("director", BindingFlags.Instance | BindingFlags.NonPublic).SetValue(sample, director);
        Call(sample, "Start");
#if ENABLE_INPUT_SYSTEM
        UnityEngine.InputSystem.Keyboard.CurrentForTests = null;
        Call(sample, "Update");  // no keyboard connected: nothing, no exception
#endif
        logs.Clear();
        foreach (int digit in new[] { 1, -1, 2, 3 })
        {
            Press(digit);
            Call(sample, "Update");
        }
        Press(-1);
        string all = string.Join("|", logs);
        Check(logs.Count == 3, "three events fired: " + all);
        Check(logs[0] == "Log EventShots: enter_hall -> unity-1", logs[0]);
        Check(logs[1] == "Log EventShots: draw_sword -> unity-2", logs[1]);
        Check(logs[2] == "Log EventShots: dragon_attacks -> unity-3", logs[2]);
#if SHOTSTREAM_TIMELINE
        Cutscene(client, director, sample);
#else
        // without the Timeline package C only says what the cutscene needs
        Press(4);
        Call(sample, "Update");
        Press(-1);
        Check(logs.Count == 4 && logs[3].StartsWith("Warning EventShots: the cutscene (key C) is a Timeline: add the Timeline package"), string.Join("|", logs));
#endif
        Console.WriteLine("SAMPLE OK " + Build);
        return 0;
    }
}
