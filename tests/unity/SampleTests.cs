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

    static int Main()
    {
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
