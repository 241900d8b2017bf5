// Editor preview: Window/ShotStream/Preview. Connects to a gateway (inline transport), sends shot
// prompts, plays the stream through a hidden ShotStreamScreen (same jitter buffer / row flip / upload
// as at runtime), shows per-chunk timings and the server's Stats, and saves takes: as an MP4 written by
// the service on its host (start_take / stop_take), or as PNGs of the frames this window receives while
// "Record PNGs" is on (written to disk as they arrive, see PngSequenceWriter).
// The protocol is ShotStream.Core's ShotStreamConnection; nothing here re-implements it.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using ShotStream.Core;
using ShotStream.Unity;
using UnityEditor;
using UnityEngine;

namespace ShotStream.Editor
{
    public sealed class ShotStreamWindow : EditorWindow
    {
        const int MaxChunkRows = 8;
        // Chunks received but not yet on disk while recording PNGs: the most the window holds for the recording.
        const int MaxQueuedPngChunks = 8;
        // After Disconnect the old receive loop keeps listening this long for the server's take_saved and closed.
        static readonly TimeSpan CloseGrace = TimeSpan.FromSeconds(10);

        // The form survives domain reloads (Unity serializes these with the window); the token does not, so it
        // never lands in the editor's layout files.
        [SerializeField] string serverUrl = "ws://127.0.0.1:50052/v1/direct";
        [SerializeField] string globalCaption = "";
        [SerializeField] string prompt = "";
        [SerializeField] int chunks = 0;
        [SerializeField] bool cut = true;
        [SerializeField] string takeName = "";
        [SerializeField] FrameDecoder decoder = FrameDecoder.Unspecified;
        [SerializeField] bool fullTake = false;
        [NonSerialized] string token = "";

        // Generation: which Connect() a message belongs to; only take_saved is still shown from an older one.
        struct Incoming { public int Generation; public ServerMessage Message; public byte[] Pixels; public string Error; }
        struct ChunkRow { public ulong Seq; public uint Frames; public ChunkTiming Timing; }

        readonly ConcurrentQueue<Incoming> inbox = new ConcurrentQueue<Incoming>();
        readonly Queue<KeyValuePair<ulong, long>> acks = new Queue<KeyValuePair<ulong, long>>();
        readonly List<ChunkRow> chunkRows = new List<ChunkRow>();
        // Chunk pixel copies, pooled per size: the receive loop rents, the main thread or the PNG writer returns.
        readonly ConcurrentDictionary<int, ConcurrentBag<byte[]>> pixelPools = new ConcurrentDictionary<int, ConcurrentBag<byte[]>>();
        readonly object connLock = new object();   // connection, cts, loops and generation change together
        readonly List<CancellationTokenSource> loops = new List<CancellationTokenSource>();  // every receive loop still running, lingering ones included
        ShotStreamConnection connection;
        CancellationTokenSource cts;
        Task receiveTask;
        int generation;   // bumped by Connect and Disconnect: a loop of an older generation must not install its connection
        SessionOpened session;
        Stats stats;
        TakeStarted recording;   // the service's take in progress (null: none)
        TakeSaved lastTake;
        PngSequenceWriter png;        // recording PNGs (null: not recording)
        PngSequenceWriter pngClosing; // stopped, still writing what it had queued
        GameObject host;
        ShotStreamScreen screen;
        string status = "Disconnected";
        int cueCounter;

        internal string Status { get { return status; } }
        /// <summary>The latest receive loop (tests wait on it).</summary>
        internal Task ReceiveTask { get { return receiveTask; } }
        internal PngSequenceWriter Png { get { return png ?? pngClosing; } }
        internal ShotStreamScreen Preview { get { return screen; } }

        [MenuItem("Window/ShotStream/Preview")]
        public static void Open() { GetWindow<ShotStreamWindow>("ShotStream"); }

        void OnEnable()
        {
            EditorApplication.update += Tick;
            AssemblyReloadEvents.beforeAssemblyReload += Shutdown;
            if (previewCue == null) previewCue = PreviewCue;
            ShotStreamEditorPreview.Register(previewCue);  // edit-mode tools (the Timeline track while scrubbing) cue through this session
        }

        void OnDisable()
        {
            EditorApplication.update -= Tick;
            AssemblyReloadEvents.beforeAssemblyReload -= Shutdown;
            ShotStreamEditorPreview.Unregister(previewCue);
            Shutdown();
        }

        Func<string, int, bool, string> previewCue;

        // A shot asked for by an edit-mode tool: sent on this window's session; null when not connected.
        string PreviewCue(string shotPrompt, int shotChunks, bool shotCut)
        {
            bool connected;
            lock (connLock) connected = connection != null;
            if (!connected || string.IsNullOrEmpty(shotPrompt)) return null;
            var cue = new Cue
            {
                EventId = "editor-" + (++cueCounter),
                Prompt = shotPrompt,
                NumChunks = (uint)Math.Max(0, shotChunks),
                Mode = shotCut ? CueMode.Cut : CueMode.Wait,
            };
            Send(ClientMessage.CueMessage(cue));
            status = "Previewing: " + shotPrompt;
            return cue.EventId;
        }

        // Before a domain reload (and when the window closes) nothing may outlive the domain: every receive loop
        // is cancelled now, which aborts its socket, the PNG writer drops what it has not written, and the
        // preview's texture is destroyed. Nothing here waits.
        void Shutdown()
        {
            CancellationTokenSource[] running;
            lock (connLock)
            {
                running = loops.ToArray();
                connection = null; cts = null;
                generation++;
            }
            foreach (var source in running) Cancel(source);
            if (png != null) { png.Abandon(); png = null; }
            if (pngClosing != null) { pngClosing.Abandon(); pngClosing = null; }
            recording = null;
            if (screen != null) screen.Release();
            if (host != null) DestroyImmediate(host);
            host = null; screen = null;
        }

        internal void Connect()
        {
            Disconnect(graceful: true);
            Uri uri;
            if (!Uri.TryCreate(serverUrl, UriKind.Absolute, out uri) || (uri.Scheme != "ws" && uri.Scheme != "wss"))
            {
                status = "Bad server URL (expected ws://HOST:PORT/v1/direct)";
                return;
            }
            chunkRows.Clear(); acks.Clear(); stats = null; session = null; recording = null;
            var open = new OpenSession
            {
                ClientName = "unity-editor",
                GlobalCaption = globalCaption ?? "",
                FrameFormat = FrameFormat.Rgba8,
                Transport = Transport.Inline,
                MaxChunksInFlight = 2,
                Decoder = decoder,
            };
            var source = new CancellationTokenSource();
            int gen;
            lock (connLock) { cts = source; gen = ++generation; loops.Add(source); }
            string tok = token;
            status = "Connecting…";
            receiveTask = Task.Run(() => ReceiveLoop(uri, tok, open, source, gen));
        }

        // Owns `source` (disposes it, and takes it off `loops`, when the loop ends).
        async Task ReceiveLoop(Uri uri, string tok, OpenSession open, CancellationTokenSource source, int gen)
        {
            ShotStreamConnection conn = null;
            var ct = source.Token;
            try
            {
                conn = await ShotStreamConnection.ConnectAndOpenAsync(uri, tok, open, new ReconnectPolicy { MaxRetries = 2 },
                                                                      ShotStreamConnection.DefaultOpenTimeout, ct).ConfigureAwait(false);
                lock (connLock)
                {
                    if (gen != generation) return;  // disconnected while opening (finally disposes conn)
                    connection = conn;
                }
                inbox.Enqueue(new Incoming { Generation = gen, Message = new ServerMessage(ServerKind.Opened, conn.Session) });
                while (!ct.IsCancellationRequested)
                {
                    ServerMessage m = await conn.ReceiveAsync(ct).ConfigureAwait(false);
                    if (m == null) break;
                    byte[] pixels = null;
                    if (m.Kind == ServerKind.Chunk && m.Chunk.HasPixels)
                    {
                        pixels = Rent(m.Chunk.Pixels.Count);
                        Buffer.BlockCopy(m.Chunk.Pixels.Array, m.Chunk.Pixels.Offset, pixels, 0, m.Chunk.Pixels.Count);
                    }
                    inbox.Enqueue(new Incoming { Generation = gen, Message = m, Pixels = pixels });
                    if (m.Kind == ServerKind.Closed) break;
                }
                inbox.Enqueue(new Incoming { Generation = gen, Error = "Session closed" });
            }
            catch (Exception) when (ct.IsCancellationRequested) { }  // disconnected: whatever failed, failed because of it
            catch (Exception e) { inbox.Enqueue(new Incoming { Generation = gen, Error = "Error: " + e.Message }); }
            finally
            {
                lock (connLock)
                {
                    if (connection == conn) connection = null;
                    loops.Remove(source);
                    source.Dispose();
                }
                if (conn != null) conn.Dispose();
            }
        }

        /// <summary>Test seam: queues a server event as the receive loop of the current connection would
        /// (<paramref name="pixels"/>: the chunk's pixel copy).</summary>
        internal void Deliver(ServerMessage message, byte[] pixels = null)
        {
            inbox.Enqueue(new Incoming { Generation = generation, Message = message, Pixels = pixels });
        }

        byte[] Rent(int length)
        {
            ConcurrentBag<byte[]> bag;
            byte[] b;
            if (pixelPools.TryGetValue(length, out bag) && bag.TryTake(out b)) return b;
            return new byte[length];
        }

        void Return(byte[] pixels)
        {
            if (pixels != null) pixelPools.GetOrAdd(pixels.Length, _ => new ConcurrentBag<byte[]>()).Add(pixels);
        }

        /// <summary>Ends the session. <paramref name="graceful"/>: sends close and lets the old loop run on (up to
        /// CloseGrace) so the take_saved of a take still recording reaches the window (the service finishes the
        /// MP4 when the session ends); otherwise the loop is cancelled at once. Never blocks.</summary>
        internal void Disconnect(bool graceful)
        {
            ShotStreamConnection conn;
            CancellationTokenSource source;
            lock (connLock)
            {
                conn = connection; connection = null;
                source = cts; cts = null;
                generation++;
            }
            if (conn != null && graceful)
            {
                conn.CloseAsync().ContinueWith(t => t.Exception, TaskContinuationOptions.OnlyOnFaulted);
                try { source.CancelAfter(CloseGrace); }
                catch (ObjectDisposedException) { }  // the loop has just ended
            }
            else if (source != null) Cancel(source);
            status = recording != null ? "Disconnected; the service is finishing take " + recording.Name : "Disconnected";
            recording = null;
        }

        // Outside connLock: a cancelled loop may run its finally (which takes the lock and disposes the source)
        // right here, on this thread.
        static void Cancel(CancellationTokenSource source)
        {
            try { source.Cancel(); }
            catch (ObjectDisposedException) { }  // the loop has just ended
        }

        void Send(ClientMessage message)
        {
            ShotStreamConnection conn;
            int gen;
            lock (connLock) { conn = connection; gen = generation; }
            if (conn == null) { status = "Not connected"; return; }
            conn.SendAsync(message).ContinueWith(t => inbox.Enqueue(new Incoming { Generation = gen, Error = "Send failed: " + t.Exception.GetBaseException().Message }),
                                                 TaskContinuationOptions.OnlyOnFaulted);
        }

        void StartTake()
        {
            Send(ClientMessage.StartTakeMessage(takeName.Trim(), fullTake ? TakeQuality.Full : TakeQuality.Unspecified));
            status = "Starting take…";
        }

        void SendShot()
        {
            if (string.IsNullOrEmpty(prompt)) { status = "A shot needs a prompt"; return; }
            var cue = new Cue
            {
                EventId = "editor-" + (++cueCounter),
                Prompt = prompt,
                NumChunks = (uint)Math.Max(0, chunks),
                Mode = cut ? CueMode.Cut : CueMode.Wait,
            };
            Send(ClientMessage.CueMessage(cue));
        }

        /// <summary>Starts writing every frame received from now on to <paramref name="folder"/> as PNGs.</summary>
        internal void StartPngRecording(string folder)
        {
            StopPngRecording();
            try { png = new PngSequenceWriter(folder, MaxQueuedPngChunks, Return); }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { status = "Cannot record PNGs to " + folder + ": " + e.Message; return; }
            status = "Recording PNGs to " + folder;
        }

        /// <summary>Stops taking frames; the writer finishes what it has queued in the background.</summary>
        internal void StopPngRecording()
        {
            if (png == null) return;
            png.Complete();
            pngClosing = png;
            png = null;
            status = "Finishing the PNG sequence in " + pngClosing.Folder + "…";
        }

        ShotStreamScreen Screen()
        {
            if (screen == null)
            {
                host = new GameObject("ShotStream editor preview");
                host.hideFlags = HideFlags.HideAndDontSave;
                screen = host.AddComponent<ShotStreamScreen>();
            }
            return screen;
        }

        void Tick()
        {
            if (Pump(Time.realtimeSinceStartupAsDouble)) Repaint();
        }

        /// <summary>Main thread: handles what the receive loop queued, presents the due frame, sends due acks;
        /// true when the window needs a repaint.</summary>
        internal bool Pump(double now)
        {
            bool dirty = false;
            Incoming p;
            while (inbox.TryDequeue(out p))
            {
                dirty = true;
                bool kept = false;
                try
                {
                    if (p.Generation != generation)
                    {
                        if (p.Message != null && p.Message.Kind == ServerKind.TakeSaved) OnTakeSaved(p.Message.TakeSaved);
                    }
                    else if (p.Message == null) status = p.Error;
                    else kept = Handle(p, now);
                }
                catch (Exception e) { status = "Error: " + e.Message; Debug.LogException(e); }
                finally { if (!kept) Return(p.Pixels); }
            }
            if (screen != null && screen.Present(now)) dirty = true;
            while (acks.Count > 0 && screen != null && screen.PresentedFrameIndex >= acks.Peek().Value)
                Send(ClientMessage.AckMessage(acks.Dequeue().Key));
            if (pngClosing != null && pngClosing.Completion.IsCompleted)
            {
                status = pngClosing.Error ?? "Saved " + pngClosing.Written + " PNG frames to " + pngClosing.Folder
                                              + (pngClosing.Dropped > 0 ? " (" + pngClosing.Dropped + " dropped: the disk was too slow)" : "");
                pngClosing = null;
                dirty = true;
            }
            return dirty;
        }

        // True when the chunk's pixels went to the PNG writer (which returns them to the pool itself).
        bool Handle(Incoming p, double now)
        {
            var m = p.Message;
            switch (m.Kind)
            {
                case ServerKind.Opened:
                    session = m.Opened;
                    Screen().OnSessionOpened(session);
                    status = "Connected: session " + session.SessionId + " (" + session.Width + "x" + session.Height + " @ " + session.Fps + " fps"
                             + (session.Decoder != FrameDecoder.Unspecified ? ", decoder " + session.Decoder : "") + ")";
                    return false;
                case ServerKind.Stats: stats = m.Stats; return false;
                case ServerKind.TakeStarted:
                    recording = m.TakeStarted;
                    status = "Recording take " + recording.Name + " on the server";
                    return false;
                case ServerKind.TakeSaved: OnTakeSaved(m.TakeSaved); return false;
                case ServerKind.Error: status = "Server error " + m.Error.Code + ": " + m.Error.Message; return false;
                case ServerKind.Chunk:
                    var c = m.Chunk;
                    chunkRows.Add(new ChunkRow { Seq = c.ChunkSeq, Frames = c.NumFrames, Timing = c.Timing });
                    if (chunkRows.Count > MaxChunkRows) chunkRows.RemoveAt(0);
                    long last = -1;
                    if (p.Pixels != null && screen != null)
                    {
                        if (c.Width != screen.Width || c.Height != screen.Height)
                        {
                            while (acks.Count > 0) Send(ClientMessage.AckMessage(acks.Dequeue().Key));  // their frames go with the old size
                            screen.Configure((int)c.Width, (int)c.Height);
                        }
                        if (screen.PushFrames(p.Pixels, 0, (int)c.NumFrames, now) > 0) last = screen.PushedFrames - 1;
                    }
                    acks.Enqueue(new KeyValuePair<ulong, long>(c.ChunkSeq, last));
                    if (p.Pixels == null || png == null) return false;
                    png.Add(p.Pixels, (int)c.NumFrames, (int)c.Width, (int)c.Height);  // the writer owns them now, queued or dropped
                    return true;
                default: return false;
            }
        }

        void OnTakeSaved(TakeSaved t)
        {
            lastTake = t;
            if (recording != null && recording.Name == t.Name) recording = null;
            status = "Take " + t.Name + " saved on the server";
        }

        void OnGUI()
        {
            EditorGUILayout.LabelField("Server", EditorStyles.boldLabel);
            serverUrl = EditorGUILayout.TextField("URL", serverUrl);
            token = EditorGUILayout.PasswordField("Token", token);
            EditorGUILayout.LabelField("Global caption");
            globalCaption = EditorGUILayout.TextArea(globalCaption, GUILayout.MinHeight(36));
            decoder = (FrameDecoder)EditorGUILayout.EnumPopup("Decoder (Unspecified = server's)", decoder);
            EditorGUILayout.BeginHorizontal();
            if (GUILayout.Button(connection == null ? "Connect" : "Reconnect")) Connect();
            if (GUILayout.Button("Disconnect")) Disconnect(graceful: true);
            EditorGUILayout.EndHorizontal();
            EditorGUILayout.HelpBox(status, MessageType.None);

            EditorGUILayout.LabelField("Shot", EditorStyles.boldLabel);
            prompt = EditorGUILayout.TextArea(prompt, GUILayout.MinHeight(36));
            chunks = Math.Max(0, EditorGUILayout.IntField("Chunks (0 = default)", chunks));
            cut = EditorGUILayout.Toggle("Cut (else wait)", cut);
            if (GUILayout.Button(cut ? "Send shot (cut)" : "Send shot (wait)")) SendShot();

            if (screen != null && screen.Texture != null)
            {
                Rect r = GUILayoutUtility.GetAspectRect((float)screen.Width / screen.Height);
                EditorGUI.DrawPreviewTexture(r, screen.Texture, null, ScaleMode.ScaleToFit);
                var j = screen.Jitter;
                EditorGUILayout.LabelField("Playback", j.QueuedFrames + " frames queued, " + j.Underruns + " underruns, "
                                                       + j.SkippedFrames + " skipped, " + j.RefusedFrames + " refused");
            }

            EditorGUILayout.LabelField("Chunks (latest last)", EditorStyles.boldLabel);
            foreach (var row in chunkRows)
            {
                var t = row.Timing;
                EditorGUILayout.LabelField("#" + row.Seq + " (" + row.Frames + " frames)", t == null ? "no timing"
                    : string.Format("denoise {0:F0} ms, decode {1:F0} ms, queue {2:F0} ms, since shot start {3:F0} ms",
                                    t.DenoiseMs, t.DecodeMs, t.QueueMs, t.SinceShotStartMs));
            }
            if (stats != null)
            {
                EditorGUILayout.LabelField("Server stats", EditorStyles.boldLabel);
                EditorGUILayout.LabelField("Chunk mean", stats.ChunkMsMean.ToString("F1") + " ms, " + stats.Fps.ToString("F1") + " fps");
                EditorGUILayout.LabelField("GPU memory", (stats.GpuMemoryUsedBytes / (1024.0 * 1024.0)).ToString("F0") + " MiB");
                EditorGUILayout.LabelField("Queue", stats.QueuedCues + " cues, " + stats.ChunksInFlight + " chunks in flight, " + stats.Sessions + " sessions");
            }

            EditorGUILayout.LabelField("Take as MP4 (written by the service on its host)", EditorStyles.boldLabel);
            EditorGUI.BeginDisabledGroup(connection == null);
            if (recording == null)
            {
                takeName = EditorGUILayout.TextField("Name (empty = automatic)", takeName);
                fullTake = EditorGUILayout.Toggle("Full (Wan re-decode)", fullTake);
                if (GUILayout.Button("Start take")) StartTake();
            }
            else
            {
                EditorGUILayout.LabelField("Recording", recording.Name + " → " + recording.Path);
                if (GUILayout.Button("Stop take")) Send(ClientMessage.StopTakeMessage());
            }
            EditorGUI.EndDisabledGroup();
            if (lastTake != null)
            {
                EditorGUILayout.LabelField("Saved", lastTake.Path);
                EditorGUILayout.LabelField("", lastTake.Frames + " frames, " + lastTake.DurationS.ToString("F2") + " s, "
                                                + (lastTake.Bytes / (1024.0 * 1024.0)).ToString("F1") + " MiB");
                if (File.Exists(lastTake.Path) && GUILayout.Button("Show in file browser")) EditorUtility.RevealInFinder(lastTake.Path);
                if (lastTake.FullPath.Length > 0 && lastTake.FullPath != lastTake.Path)
                {
                    EditorGUILayout.LabelField("Full quality", lastTake.FullPath);
                    EditorGUILayout.LabelField("", (lastTake.FullBytes / (1024.0 * 1024.0)).ToString("F1") + " MiB");
                    if (File.Exists(lastTake.FullPath) && GUILayout.Button("Show full take in file browser")) EditorUtility.RevealInFinder(lastTake.FullPath);
                }
            }

            EditorGUILayout.LabelField("Take as PNG sequence (frames received while recording)", EditorStyles.boldLabel);
            if (png == null)
            {
                if (GUILayout.Button("Record PNGs…"))
                {
                    string folder = EditorUtility.SaveFolderPanel("Record frames as a PNG sequence", "", "shotstream_take");
                    if (!string.IsNullOrEmpty(folder)) StartPngRecording(folder);
                }
            }
            else
            {
                EditorGUILayout.LabelField("Recording to", png.Folder);
                EditorGUILayout.LabelField("Frames", png.Written + " written" + (png.Dropped > 0 ? ", " + png.Dropped + " dropped" : ""));
                if (GUILayout.Button("Stop recording PNGs")) StopPngRecording();
            }
        }
    }
}
