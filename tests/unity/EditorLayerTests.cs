// Editor-layer tests under mono: unity_plugin/com.shotstream.bridge/Editor/*.cs compiled together with this file
// (so the window's internal seams are visible) against the UnityEngine and UnityEditor stubs, in edit mode
// (Application.isPlaying false: the stub refuses Destroy there, as Unity does). Built and run by
// tests/test_unity_package.py:
//   mono EditorLayerTests.exe unit DIR     -> unit tests (PNG sequences go under DIR); "N passed, M failed" last
//   mono EditorLayerTests.exe reload URL   -> the window connected to tests/unity/fake_gateway.py, then a domain
//                                             reload: prints "RELOAD ..." and "DONE" last
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Threading;
using ShotStream.Core;
using ShotStream.Editor;
using UnityEditor;
using UnityEngine;
using Debug = UnityEngine.Debug;

static class EditorLayerTests
{
    static int passed, failed;

    static void Check(bool cond, string what) { if (!cond) throw new Exception("check failed: " + what); }
    static void Eq<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual)) throw new Exception(what + ": expected <" + expected + ">, got <" + actual + ">");
    }

    static void Run(string name, Action test)
    {
        try { test(); passed++; Console.WriteLine("ok   " + name); }
        catch (Exception e) { failed++; Console.WriteLine("FAIL " + name + ": " + e); }
    }

    // What Unity does to a window: its message methods are private and found by name.
    static void Message(object target, string name)
    {
        target.GetType().GetMethod(name, BindingFlags.Instance | BindingFlags.NonPublic).Invoke(target, null);
    }

    const int W = 4, H = 2, FrameBytes = W * H * 4;

    static ServerMessage Opened()
    {
        return new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "s", Width = W, Height = H, Fps = 16, FrameFormat = FrameFormat.Rgba8,
                                                                        MaxChunksInFlight = 2, FramesFirstChunk = 2, FramesPerChunk = 2 });
    }

    // Chunk `seq` of two frames; byte i of frame f is (seq * 16 + f * 8 + i) mod 256, so every frame differs.
    static byte[] Pixels(int seq)
    {
        var px = new byte[2 * FrameBytes];
        for (int f = 0; f < 2; f++)
            for (int i = 0; i < FrameBytes; i++) px[f * FrameBytes + i] = (byte)(seq * 16 + f * 8 + i);
        return px;
    }

    static ServerMessage Chunk(int seq)
    {
        return new ServerMessage(ServerKind.Chunk, new FrameChunk { ChunkSeq = (ulong)seq, NumFrames = 2, Width = W, Height = H, FrameFormat = FrameFormat.Rgba8 });
    }

    // What the stub's EncodeArrayToPNG makes of a top-down frame flipped into Unity's row order (bottom row first).
    static byte[] ExpectedPng(byte[] chunk, int frame)
    {
        var png = new byte[11 + FrameBytes];
        png[0] = (byte)'P'; png[1] = (byte)'N'; png[2] = (byte)'G';
        BitConverter.GetBytes((uint)W).CopyTo(png, 3);
        BitConverter.GetBytes((uint)H).CopyTo(png, 7);
        int row = W * 4;
        for (int y = 0; y < H; y++) Buffer.BlockCopy(chunk, frame * FrameBytes + y * row, png, 11 + (H - 1 - y) * row, row);
        return png;
    }

    static int Main(string[] args) { return ProcessExit.Now(RunAll(args)); }

    static int RunAll(string[] args)
    {
        Application.PlayingForTests = false;  // the editor, not play mode
        Debug.Sink = (t, m) => { };
        if (args.Length == 2 && args[0] == "reload") return Reload(args[1]);
        if (args.Length != 2 || args[0] != "unit") { Console.Error.WriteLine("usage: EditorLayerTests.exe unit DIR | reload URL"); return 2; }
        string dir = args[1];

        Run("the window keeps no frames unless recording PNGs, and writes them to disk as they arrive", () =>
        {
            var window = ScriptableObject.CreateInstance<ShotStreamWindow>();
            Message(window, "OnEnable");
            window.Deliver(Opened());
            window.Deliver(Chunk(1), Pixels(1));
            window.Pump(0.0);
            Check(window.Png == null, "not recording");
            Eq(2L, window.Preview.PushedFrames, "the preview plays the chunk");
            string folder = Path.Combine(dir, "take");
            window.StartPngRecording(folder);
            var writer = window.Png;
            window.Deliver(Chunk(2), Pixels(2));
            window.Deliver(Chunk(3), Pixels(3));
            window.Pump(0.1);
            window.StopPngRecording();
            window.Deliver(Chunk(4), Pixels(4));  // after the stop: not recorded
            window.Pump(0.2);
            Check(writer.Completion.Wait(TimeSpan.FromSeconds(20)), "the writer finished what it had queued");
            window.Pump(0.3);
            Eq("Saved 4 PNG frames to " + folder, window.Status, "status");
            var files = Directory.GetFiles(folder).Select(Path.GetFileName).OrderBy(n => n, StringComparer.Ordinal).ToArray();
            Eq("frame_00000.png,frame_00001.png,frame_00002.png,frame_00003.png", string.Join(",", files), "one file a frame, numbered across chunks");
            for (int k = 0; k < 4; k++)
            {
                byte[] want = ExpectedPng(Pixels(2 + k / 2), k % 2), got = File.ReadAllBytes(Path.Combine(folder, files[k]));
                Check(want.SequenceEqual(got), files[k] + ": the frame, rows flipped for EncodeArrayToPNG");
            }
            var texture = window.Preview.Texture;
            Message(window, "OnDisable");
            Check(texture.IsDestroyedForTests && window.Preview == null, "closing the window destroys the preview texture (DestroyImmediate in edit mode)");
        });

        Run("the open window is the edit-mode preview: tools cue shots on its session", () =>
        {
            var window = ScriptableObject.CreateInstance<ShotStreamWindow>();
            Check(!ShotStream.Unity.ShotStreamEditorPreview.Available, "no window, no preview");
            Message(window, "OnEnable");
            Check(ShotStream.Unity.ShotStreamEditorPreview.Available, "registered while open");
            Check(ShotStream.Unity.ShotStreamEditorPreview.Cue("a gate opens", 1, true) == null, "not connected: nothing sent");
            Message(window, "OnDisable");
            Check(!ShotStream.Unity.ShotStreamEditorPreview.Available, "unregistered when closed");
        });

        Run("a PNG write error stops the recording and says why", () =>
        {
            string folder = Path.Combine(dir, "gone");
            var returned = new List<byte[]>();
            var writer = new PngSequenceWriter(folder, 4, px => { lock (returned) returned.Add(px); });
            Directory.Delete(folder);
            File.WriteAllText(folder, "a file where the folder was");
            var px1 = Pixels(1);
            Check(writer.Add(px1, 2, W, H), "queued");
            writer.Complete();
            Check(writer.Completion.Wait(TimeSpan.FromSeconds(20)), "finished");
            Check(writer.Error != null && writer.Error.Contains("frame_00000.png") && writer.Error.Contains("failed"), "error: " + writer.Error);
            Eq(0, writer.Written, "written");
            Eq(2, writer.Dropped, "both frames counted as lost");
            Check(!writer.Add(Pixels(2), 2, W, H), "no more after Complete");
            Eq(4, writer.Dropped, "counted");
            lock (returned) Eq(2, returned.Count, "every chunk's pixels go back to the pool");
        });

        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }

    // Before a domain reload the window must let go of everything at once: the receive loop ends (its socket
    // aborted) without the 10 s grace a Disconnect gives a take, and the preview texture is destroyed.
    static int Reload(string url)
    {
        var window = ScriptableObject.CreateInstance<ShotStreamWindow>();
        typeof(ShotStreamWindow).GetField("serverUrl", BindingFlags.Instance | BindingFlags.NonPublic).SetValue(window, url);  // as Unity restores it
        Message(window, "OnEnable");
        window.Connect();
        var sw = Stopwatch.StartNew();
        while (!window.Status.StartsWith("Connected") && sw.Elapsed < TimeSpan.FromSeconds(20))
        {
            window.Pump(sw.Elapsed.TotalSeconds);
            Thread.Sleep(5);
        }
        Console.WriteLine("STATUS " + window.Status);
        var texture = window.Preview.Texture;
        var loop = window.ReceiveTask;
        AssemblyReloadEvents.RaiseBeforeAssemblyReloadForTests();
        bool ended = loop.Wait(TimeSpan.FromSeconds(5));
        Console.WriteLine("RELOAD loop ended " + ended + ", texture destroyed " + texture.IsDestroyedForTests + ", preview " + (window.Preview == null ? "released" : "kept"));
        Message(window, "OnDisable");
        Console.WriteLine("DONE");
        return 0;
    }
}
