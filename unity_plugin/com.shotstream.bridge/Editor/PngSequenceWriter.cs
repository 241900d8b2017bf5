// Writes the frames the editor preview receives as a PNG sequence while it records, on a worker thread.
using System;
using System.Collections.Concurrent;
using System.Globalization;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using UnityEngine;
using UnityEngine.Experimental.Rendering;

namespace ShotStream.Editor
{
    /// <summary>
    /// frame_00000.png, frame_00001.png, ... in one folder, written as chunks arrive: the editor holds at most
    /// <c>maxQueuedChunks</c> chunks that are not on disk yet (a recording of any length costs no more memory), and
    /// encoding (ImageConversion.EncodeArrayToPNG, which is thread-safe) and file writes stay off the main thread.
    /// A chunk that finds the queue full is dropped and counted: a disk slower than the stream loses frames
    /// rather than stalling the editor. The first write error stops the recording (<see cref="Error"/>).
    /// </summary>
    sealed class PngSequenceWriter
    {
        struct Chunk { public byte[] Pixels; public int Frames, Width, Height; }

        readonly BlockingCollection<Chunk> queue;
        readonly Action<byte[]> release;
        readonly Task worker;
        int written, dropped;
        volatile bool abandoned;
        volatile string error;

        public string Folder { get; private set; }
        /// <summary>Frames on disk so far.</summary>
        public int Written { get { return Volatile.Read(ref written); } }
        /// <summary>Frames lost: the queue was full, the recording was abandoned, or a write failed.</summary>
        public int Dropped { get { return Volatile.Read(ref dropped); } }
        /// <summary>The write error that stopped the recording, or null.</summary>
        public string Error { get { return error; } }
        /// <summary>Completes once every accepted chunk is written (or dropped) after <see cref="Complete"/> or <see cref="Abandon"/>.</summary>
        public Task Completion { get { return worker; } }

        /// <param name="release">Gets each chunk's pixel array back once the writer is done with it (a pool).</param>
        public PngSequenceWriter(string folder, int maxQueuedChunks, Action<byte[]> release)
        {
            if (string.IsNullOrEmpty(folder)) throw new ArgumentException("a folder is needed", nameof(folder));
            Directory.CreateDirectory(folder);
            Folder = folder;
            this.release = release;
            queue = new BlockingCollection<Chunk>(new ConcurrentQueue<Chunk>(), Math.Max(1, maxQueuedChunks));
            worker = Task.Factory.StartNew(Run, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }

        /// <summary>Queues a chunk of top-down RGBA frames; the writer owns <paramref name="pixels"/> until it hands
        /// them to the release callback. False (and the pixels released at once) when the chunk was dropped.</summary>
        public bool Add(byte[] pixels, int frames, int width, int height)
        {
            if (pixels == null) throw new ArgumentNullException(nameof(pixels));
            if (width < 1 || height < 1 || frames < 0 || (long)frames * width * height * 4 > pixels.Length)
                throw new ArgumentOutOfRangeException(nameof(frames), "the pixels do not hold frames x width x height RGBA pixels");
            bool queued = false;
            try { queued = error == null && queue.TryAdd(new Chunk { Pixels = pixels, Frames = frames, Width = width, Height = height }); }
            catch (InvalidOperationException) { }  // already completed
            if (!queued)
            {
                Interlocked.Add(ref dropped, frames);
                release(pixels);
            }
            return queued;
        }

        /// <summary>No more chunks: the worker writes what is queued and ends.</summary>
        public void Complete() { queue.CompleteAdding(); }

        /// <summary>No more chunks, and the queued ones are dropped (a domain reload must not wait for the disk).</summary>
        public void Abandon()
        {
            abandoned = true;
            queue.CompleteAdding();
        }

        void Run()
        {
            byte[] flipped = null;
            foreach (var c in queue.GetConsumingEnumerable())
            {
                try
                {
                    if (abandoned || error != null) { Interlocked.Add(ref dropped, c.Frames); continue; }
                    int row = c.Width * 4, frameBytes = row * c.Height;
                    if (flipped == null || flipped.Length != frameBytes) flipped = new byte[frameBytes];
                    for (int f = 0; f < c.Frames; f++)
                    {
                        if (abandoned) { Interlocked.Add(ref dropped, c.Frames - f); break; }
                        // EncodeArrayToPNG takes Unity's texture row order (bottom row first); frames arrive top row first.
                        for (int y = 0; y < c.Height; y++)
                            Buffer.BlockCopy(c.Pixels, f * frameBytes + y * row, flipped, (c.Height - 1 - y) * row, row);
                        byte[] png = ImageConversion.EncodeArrayToPNG(flipped, GraphicsFormat.R8G8B8A8_SRGB, (uint)c.Width, (uint)c.Height);
                        string path = Path.Combine(Folder, "frame_" + written.ToString("D5", CultureInfo.InvariantCulture) + ".png");
                        try { File.WriteAllBytes(path, png); }
                        catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                        {
                            error = "writing " + path + " failed: " + e.Message;
                            Interlocked.Add(ref dropped, c.Frames - f);
                            break;
                        }
                        Interlocked.Increment(ref written);
                    }
                }
                finally { release(c.Pixels); }
            }
        }
    }
}
