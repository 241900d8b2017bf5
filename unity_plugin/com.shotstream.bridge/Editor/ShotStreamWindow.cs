// Editor preview: Window/ShotStream/Preview. Connects to a gateway (inline transport), sends shot
// prompts, plays the stream through a hidden ShotStreamScreen (same jitter buffer / row flip / upload
// as at runtime), shows per-chunk timings and the server's Stats, and saves takes: as an MP4 written by
// the service on its host (start_take / stop_take), or as PNGs of the frames this window received.
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
        const int MaxPngFrames = 4096;
        const int MaxChunkRows = 8;
        // After Disconnect the old receive loop keeps listening this long for the server's take_saved and closed.
        static readonly TimeSpan CloseGrace = TimeSpan.FromSeconds(10);

        string serverUrl = "ws://127.0.0.1:50052/v1/direct";
        string token = "";
        string globalCaption = "";
        string prompt = "";
        int chunks = 0;
        bool cut = true;
        string takeName = "";

        // Generation: which Connect() a message belongs to; only take_saved is still shown from an older one.
        struct Incoming { public int Generation; public ServerMessage Message; public byte[] Pixels; public string Error; }
        struct ChunkRow { public ulong Seq; public uint Frames; public ChunkTiming Timing; }

        readonly ConcurrentQueue<Incoming> inbox = new ConcurrentQueue<Incoming>();
        readonly Queue<KeyValuePair<ulong, long>> acks = new Queue<KeyValuePair<ulong, long>>();
        readonly List<ChunkRow> chunkRows = new List<ChunkRow>();
        readonly List<byte[]> pngFrames = new List<byte[]>();   // top-down RGBA frames of this session, for the PNG export
        readonly object connLock = new object();   // connection, cts and generation change together
        ShotStreamConnection connection;
        CancellationTokenSource cts;
        int generation;   // bumped by Connect and Disconnect: a loop of an older generation must not install its connection
        SessionOpened session;
        Stats stats;
        TakeStarted recording;   // the service's take in progress (null: none)
        TakeSaved lastTake;
        GameObject host;
        ShotStreamScreen screen;
        string status = "Disconnected";
        int cueCounter;

        [MenuItem("Window/ShotStream/Preview")]
        public static void Open() { GetWindow<ShotStreamWindow>("ShotStream"); }

        void OnEnable() { EditorApplication.update += Tick; }

        void OnDisable()
        {
            EditorApplication.update -= Tick;
            Disconnect();
            if (host != null) DestroyImmediate(host);
            host = null; screen = null;
        }

        void Connect()
        {
            Disconnect();
            Uri uri;
            if (!Uri.TryCreate(serverUrl, UriKind.Absolute, out uri) || (uri.Scheme != "ws" && uri.Scheme != "wss"))
            {
                status = "Bad server URL (expected ws://HOST:PORT/v1/direct)";
                return;
            }
            pngFrames.Clear(); chunkRows.Clear(); acks.Clear(); stats = null; session = null; recording = null;
            var open = new OpenSession
            {
                ClientName = "unity-editor",
                GlobalCaption = globalCaption ?? "",
                FrameFormat = FrameFormat.Rgba8,
                Transport = Transport.Inline,
                MaxChunksInFlight = 2,
            };
            var source = new CancellationTokenSource();
            int gen;
            lock (connLock) { cts = source; gen = ++generation; }
            string tok = token;
            status = "Connecting…";
            Task.Run(() => ReceiveLoop(uri, tok, open, source, gen));
        }

        // Owns `source` (disposes it when the loop ends).
        async Task ReceiveLoop(Uri uri, string tok, OpenSession open, CancellationTokenSource source, int gen)
        {
            ShotStreamConnection conn = null;
            var ct = source.Token;
            try
            {
                conn = await ShotStreamConnection.ConnectAndOpenAsync(uri, tok, open, new ReconnectPolicy { MaxRetries = 2 }, ct).ConfigureAwait(false);
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
                        pixels = new byte[m.Chunk.Pixels.Count];
                        Buffer.BlockCopy(m.Chunk.Pixels.Array, m.Chunk.Pixels.Offset, pixels, 0, pixels.Length);
                    }
                    inbox.Enqueue(new Incoming { Generation = gen, Message = m, Pixels = pixels });
                    if (m.Kind == ServerKind.Closed) break;
                }
                inbox.Enqueue(new Incoming { Generation = gen, Error = "Session closed" });
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
            catch (Exception e) { inbox.Enqueue(new Incoming { Generation = gen, Error = "Error: " + e.Message }); }
            finally
            {
                lock (connLock) { if (connection == conn) connection = null; }
                if (conn != null) conn.Dispose();
                source.Dispose();
            }
        }

        // Sends close and lets the old loop run on (up to CloseGrace) so the take_saved of a take still
        // recording reaches the window: the service finishes the MP4 when the session ends.
        void Disconnect()
        {
            ShotStreamConnection conn;
            CancellationTokenSource source;
            lock (connLock)
            {
                conn = connection; connection = null;
                source = cts; cts = null;
                generation++;
            }
            bool closeSent = false;
            if (conn != null)
            {
                try { closeSent = conn.CloseAsync().Wait(TimeSpan.FromSeconds(1)); } catch (Exception) { }
            }
            if (source != null)
            {
                try
                {
                    if (closeSent) source.CancelAfter(CloseGrace);
                    else source.Cancel();
                }
                catch (ObjectDisposedException) { }  // the loop had already ended
            }
            status = recording != null ? "Disconnected; the service is finishing take " + recording.Name : "Disconnected";
            recording = null;
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
            Send(ClientMessage.StartTakeMessage(takeName.Trim()));
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
            double now = Time.realtimeSinceStartupAsDouble;
            bool dirty = false;
            Incoming p;
            while (inbox.TryDequeue(out p))
            {
                dirty = true;
                if (p.Generation != generation)
                {
                    if (p.Message != null && p.Message.Kind == ServerKind.TakeSaved) OnTakeSaved(p.Message.TakeSaved);
                    continue;
                }
                if (p.Message == null) { status = p.Error; continue; }
                try { Handle(p, now); }
                catch (Exception e) { status = "Error: " + e.Message; Debug.LogException(e); }
            }
            if (screen != null && screen.Present(now)) dirty = true;
            while (acks.Count > 0 && screen != null && screen.PresentedFrameIndex >= acks.Peek().Value)
                Send(ClientMessage.AckMessage(acks.Dequeue().Key));
            if (dirty) Repaint();
        }

        void Handle(Incoming p, double now)
        {
            var m = p.Message;
            switch (m.Kind)
            {
                case ServerKind.Opened:
                    session = m.Opened;
                    Screen().OnSessionOpened(session);
                    status = "Connected: session " + session.SessionId + " (" + session.Width + "x" + session.Height + " @ " + session.Fps + " fps)";
                    break;
                case ServerKind.Stats: stats = m.Stats; break;
                case ServerKind.TakeStarted:
                    recording = m.TakeStarted;
                    status = "Recording take " + recording.Name + " on the server";
                    break;
                case ServerKind.TakeSaved: OnTakeSaved(m.TakeSaved); break;
                case ServerKind.Error: status = "Server error " + m.Error.Code + ": " + m.Error.Message; break;
                case ServerKind.Chunk:
                    var c = m.Chunk;
                    chunkRows.Add(new ChunkRow { Seq = c.ChunkSeq, Frames = c.NumFrames, Timing = c.Timing });
                    if (chunkRows.Count > MaxChunkRows) chunkRows.RemoveAt(0);
                    long last = -1;
                    if (p.Pixels != null && screen != null)
                    {
                        if (c.Width != screen.Width || c.Height != screen.Height) screen.Configure((int)c.Width, (int)c.Height);
                        screen.PushFrames(p.Pixels, 0, (int)c.NumFrames, now);
                        last = screen.PushedFrames - 1;
                        int frameBytes = (int)(c.Width * c.Height * 4);
                        for (int i = 0; i < c.NumFrames && pngFrames.Count < MaxPngFrames; i++)
                        {
                            var f = new byte[frameBytes];
                            Buffer.BlockCopy(p.Pixels, i * frameBytes, f, 0, frameBytes);
                            pngFrames.Add(f);
                        }
                    }
                    acks.Enqueue(new KeyValuePair<ulong, long>(c.ChunkSeq, last));
                    break;
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
            EditorGUILayout.BeginHorizontal();
            if (GUILayout.Button(connection == null ? "Connect" : "Reconnect")) Connect();
            if (GUILayout.Button("Disconnect")) Disconnect();
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
            }

            EditorGUILayout.LabelField("Take as PNG sequence (frames received here)", EditorStyles.boldLabel);
            EditorGUILayout.LabelField("Frames", pngFrames.Count.ToString());
            if (GUILayout.Button("Save PNG sequence…") && pngFrames.Count > 0) SavePngs();
        }

        void SavePngs()
        {
            string folder = EditorUtility.SaveFolderPanel("Save take as PNG sequence", "", "shotstream_take");
            if (string.IsNullOrEmpty(folder) || session == null) return;
            int w = (int)session.Width, h = (int)session.Height, row = w * 4;
            var tex = new Texture2D(w, h, TextureFormat.RGBA32, false);
            var flipped = new byte[row * h];
            try
            {
                for (int i = 0; i < pngFrames.Count; i++)
                {
                    if (pngFrames[i].Length != flipped.Length) continue;  // a frame of another size
                    EditorUtility.DisplayProgressBar("ShotStream", "Saving frame " + (i + 1) + "/" + pngFrames.Count, (float)i / pngFrames.Count);
                    for (int y = 0; y < h; y++) Buffer.BlockCopy(pngFrames[i], y * row, flipped, (h - 1 - y) * row, row);
                    tex.LoadRawTextureData(flipped);
                    tex.Apply(false);
                    File.WriteAllBytes(Path.Combine(folder, "frame_" + i.ToString("D5") + ".png"), tex.EncodeToPNG());
                }
                status = "Saved " + pngFrames.Count + " frames to " + folder;
            }
            catch (Exception e) { status = "Save failed: " + e.Message; }
            finally
            {
                EditorUtility.ClearProgressBar();
                DestroyImmediate(tex);
            }
        }
    }
}
