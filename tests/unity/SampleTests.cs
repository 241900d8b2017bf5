// The Event Shots sample's script under mono, built twice by tests/test_unity_package.py: with the legacy Input
// Manager, and with -define:ENABLE_INPUT_SYSTEM against stubs/InputSystemStub.cs (a project on the new Input System
// only, where UnityEngine.Input throws). Keys pressed through the stubs' hooks must fire the sample's game events.
// Prints "SAMPLE OK <input>" last and exits 0, or throws.
using System;
using System.Collections.Generic;
using System.Reflection;
using ShotStream.Samples;
using ShotStream.Unity;
using UnityEngine;

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

    // C: the cutscene, against a simulated service (each cue: one chunk of 4 frames, as soon as it is cued) and a screen.
    static void Cutscene(ShotStreamClient client, ShotStreamDirector director, EventShotsSample sample)
    {
        var screen = client.gameObject.AddComponent<ShotStreamScreen>();
        client.Screen = screen;
        var cues = new List<ShotStream.Core.Cue>();
        client.SendHook = m => { if (m.Kind == ShotStream.Core.ClientKind.Cue) cues.Add(m.AsCue); return System.Threading.Tasks.Task.FromResult(0); };
        client.Deliver(new ShotStream.Core.ServerMessage(ShotStream.Core.ServerKind.Opened, new ShotStream.Core.SessionOpened { SessionId = "s", Width = 2, Height = 1,
            Fps = 16, FrameFormat = ShotStream.Core.FrameFormat.Rgba8, MaxChunksInFlight = 2, FramesFirstChunk = 4, FramesPerChunk = 4 }));
        client.Pump(0);
        int sentBefore = cues.Count;  // the three fired above went out when the session opened: left unanswered
        var steps = new List<string>();
        sample.cutsceneStep.AddListener(step => steps.Add(step + "@" + screen.PresentedFrameIndex));
        Press(4);
        Call(sample, "Update");
        Press(-1);
        Check(steps.Count == 1 && steps[0] == "start@-1", "the cutscene starts at once: " + string.Join(",", steps));
        Check(cues.Count == sentBefore + 2, "enter_hall and draw_sword are cued together");
        int served = sentBefore;
        uint shot = 0;
        ulong seq = 0;
        for (int frame = 0; frame < 2000 && steps.Count < 4; frame++)
        {
            while (served < cues.Count)
            {
                var c = cues[served++];
                client.Deliver(new ShotStream.Core.ServerMessage(ShotStream.Core.ServerKind.ShotStarted, new ShotStream.Core.ShotStarted { EventId = c.EventId, ShotIndex = shot }));
                client.Deliver(new ShotStream.Core.ServerMessage(ShotStream.Core.ServerKind.Chunk, new ShotStream.Core.FrameChunk { ChunkSeq = ++seq, EventId = c.EventId, ShotIndex = shot,
                    NumFrames = 4, Width = 2, Height = 1, FrameFormat = ShotStream.Core.FrameFormat.Rgba8, LastInShot = true }), new byte[32]);
                client.Deliver(new ShotStream.Core.ServerMessage(ShotStream.Core.ServerKind.ShotFinished, new ShotStream.Core.ShotFinished { EventId = c.EventId, ShotIndex = shot++ }));
            }
            client.Pump(0);
            screen.Advance(1 / 60.0);
            if (frame == 10) { Press(4); Call(sample, "Update"); Press(-1); }  // C again mid-cutscene: ignored
            MonoBehaviour.StepCoroutinesForTests();
        }
        // (the service answers only the cutscene's cues) enter_hall: frames 0-3, draw_sword 4-7 right behind it, dragon 8-11
        Check(string.Join(",", steps) == "start@-1,entered@4,sword drawn@7,end@11",
              "each step once the shot before it has ended on screen (the next shot's first frame, or its last frame's time over): " + string.Join(",", steps));
        Check(cues.Count == sentBefore + 3 && cues[cues.Count - 1].Mode == ShotStream.Core.CueMode.Cut, "dragon_attacks cut in once draw_sword had ended");
    }

    // mono SampleTests.exe live URL: the sample's cutscene (key C) against the service, with the sample's prompt map
    // (its chunk counts and cut): every step after its shot ended on screen, the shots' frames on screen in cutscene
    // order, each shot's frames once and in order. Prints LIVE lines, "LIVE SAMPLE OK" last.
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
        double last = 0;
        bool pressed = false;
        while (clock.Elapsed.TotalSeconds < 240 && !(steps.Count > 0 && steps[steps.Count - 1].StartsWith("end@")))
        {
            System.Threading.Thread.Sleep(5);
            double now = clock.Elapsed.TotalSeconds;
            client.Pump(now);
            if (!pressed && client.Session != null) { Press(4); Call(sample, "Update"); Press(-1); pressed = true; }
            screen.Advance(now - last);
            last = now;
            MonoBehaviour.StepCoroutinesForTests();
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
        if (at("start") != 0) problems.Add("start at " + at("start"));
        if (at("entered") < enter) problems.Add("entered before enter_hall's " + enter + " frames were shown: " + at("entered"));
        if (at("sword drawn") < enter + sword) problems.Add("sword drawn too early: " + at("sword drawn"));
        if (at("end") != enter + sword + dragon) problems.Add("end at " + at("end") + " of " + (enter + sword + dragon));
        foreach (var p in problems) Console.WriteLine("LIVE problem " + p);
        Console.WriteLine(problems.Count == 0 ? "LIVE SAMPLE OK" : "LIVE SAMPLE FAILED");
        return problems.Count == 0 ? 0 : 1;
    }

    static int Main(string[] args)
    {
        if (args.Length == 2 && args[0] == "live") return Live(args[1]);
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
        Cutscene(client, director, sample);
        Console.WriteLine("SAMPLE OK " + Mode);
        return 0;
    }
}
