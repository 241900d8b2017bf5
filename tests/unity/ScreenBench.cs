// Main-thread cost of a chunk in the Unity layer, under mono against the stubs (no GPU: the stub's texture is CPU
// memory, so this measures the copies and bookkeeping on the main thread, not Apply's upload to the GPU).
//   mono ScreenBench.exe [WIDTH HEIGHT FRAMES_PER_CHUNK CHUNKS]     (default 832 480 12 200)
// Each chunk is handed to ShotStreamClient as its receive loop would (pixels in a pooled buffer, off the timed
// path), then timed: the client's Pump (dispatch, push into the screen) and the screen's Advance for each of the
// chunk's frames (one upload each). Prints one line per measure, "name value unit".
using System;
using System.Diagnostics;
using ShotStream.Core;
using ShotStream.Unity;
using UnityEngine;

static class ScreenBench
{
    static int Main(string[] args)
    {
        int w = args.Length > 0 ? int.Parse(args[0]) : 832, h = args.Length > 1 ? int.Parse(args[1]) : 480;
        int perChunk = args.Length > 2 ? int.Parse(args[2]) : 12, chunks = args.Length > 3 ? int.Parse(args[3]) : 200;
        UnityEngine.Debug.Sink = (t, m) => { };
        var go = new GameObject("bench");
        var client = go.AddComponent<ShotStreamClient>();
        var screen = go.AddComponent<ShotStreamScreen>();
        client.Screen = screen;
        client.SendHook = m => System.Threading.Tasks.Task.FromResult(0);
        client.Deliver(new ServerMessage(ServerKind.Opened, new SessionOpened { SessionId = "bench", Width = (uint)w, Height = (uint)h, Fps = 16,
            FrameFormat = FrameFormat.Rgba8, MaxChunksInFlight = 2, FramesFirstChunk = (uint)perChunk, FramesPerChunk = (uint)perChunk }));
        client.Pump(0);
        int chunkBytes = w * h * 4 * perChunk;
        var source = new byte[chunkBytes];
        new System.Random(1).NextBytes(source);
        var pump = new Stopwatch();
        var present = new Stopwatch();
        double clockStep = 1.0 / 16;
        long allocated = 0;
        int warm = 10;
        for (int c = 0; c < warm + chunks; c++)
        {
            // what the receive loop does off the main thread: the chunk's pixels in a buffer of their own
            var pixels = new byte[chunkBytes];
            Buffer.BlockCopy(source, 0, pixels, 0, chunkBytes);
            client.Deliver(new ServerMessage(ServerKind.Chunk, new FrameChunk { ChunkSeq = (ulong)c + 1, EventId = "e", NumFrames = (uint)perChunk,
                Width = (uint)w, Height = (uint)h, FrameFormat = FrameFormat.Rgba8 }), pixels);
            bool timed = c >= warm;
            long a0 = GC.GetAllocatedBytesForCurrentThread();
            if (timed) pump.Start();
            client.Pump(0);
            if (timed) pump.Stop();
            if (timed) present.Start();
            for (int f = 0; f < perChunk; f++) screen.Advance(f == 0 && c == 0 ? 0 : clockStep);
            if (timed) present.Stop();
            if (timed) allocated += GC.GetAllocatedBytesForCurrentThread() - a0;
        }
        double pumpMs = pump.Elapsed.TotalMilliseconds / chunks, presentMs = present.Elapsed.TotalMilliseconds / chunks;
        Console.WriteLine("frame " + w + "x" + h + " rgba, " + perChunk + " frames per chunk (" + (chunkBytes / 1048576.0).ToString("0.0") + " MiB), " + chunks + " chunks timed");
        Console.WriteLine("pump_ms_per_chunk " + pumpMs.ToString("0.000") + " ms");
        Console.WriteLine("present_ms_per_chunk " + presentMs.ToString("0.000") + " ms");
        Console.WriteLine("main_thread_ms_per_chunk " + (pumpMs + presentMs).ToString("0.000") + " ms");
        Console.WriteLine("present_ms_per_frame " + (presentMs / perChunk).ToString("0.000") + " ms");
        Console.WriteLine("allocated_bytes_per_chunk " + (allocated / chunks) + " B (main thread)");
        Console.WriteLine("presented " + (screen.PresentedFrameIndex + 1) + " of " + screen.PushedFrames + " frames");
        return 0;
    }
}
