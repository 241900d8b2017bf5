// Editor preview: Window/ShotStream/Preview. Connects to a gateway (inline transport), sends shot
// prompts, plays the stream through a hidden ShotStreamScreen (same jitter buffer / row flip / upload
// as at runtime), shows per-chunk timings and the server's Stats, and saves the take as PNGs.
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
        const int MaxTakeFrames = 4096;
        const int MaxChunkRows = 8;

        string serverUrl = "ws://127.0.0.1:50052/v1/direct";
        string token = "";
        string globalCaption = "";
        string prompt = "";
        int chunks = 0;
        bool cut = true;

        struct Incoming { public ServerMessage Message; public byte[] Pixels; public string Error; }
        struct ChunkRow { public ulong Seq; public uint Frames; public ChunkTiming Timing; }

        readonly ConcurrentQueue<Incoming> inbox = new ConcurrentQueue<Incoming>();
        readonly Queue<KeyValuePair<ulong, long>> acks = new Queue<KeyValuePair<ulong, long>>();
        readonly List<ChunkRow> chunkRows = new List<ChunkRow>();
        readonly List<byte[]> take = new List<byte[]>();   // top-down RGBA frames of this session
        ShotStreamConnection connection;
        CancellationTokenSource cts;
        SessionOpened session;
        Stats stats;
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
            take.Clear(); chunkRows.Clear(); acks.Clear(); stats = null; session = null;
            var open = new OpenSession
            {
                ClientName = "unity-editor",
                GlobalCaption = globalCaption ?? "",
                FrameFormat = FrameFormat.Rgba8,
                Transport = Transport.Inline,
                MaxChunksInFlight = 2,
            };
            cts = new CancellationTokenSource();
            var ct = cts.Token;
            string tok = token;
            status = "Connecting…";
            Task.Run(() => ReceiveLoop(uri, tok, open, ct));
        }

        async Task ReceiveLoop(Uri uri, string tok, OpenSession open, CancellationToken ct)
        {
            ShotStreamConnection conn = null;
            try
            {
                conn = await ShotStreamConnection.ConnectAndOpenAsync(uri, tok, open, new ReconnectPolicy { MaxRetries = 2 }, ct).ConfigureAwait(false);
                connection = conn;
                inbox.Enqueue(new Incoming { Message = new ServerMessage(ServerKind.Opened, conn.Session) });
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
                    inbox.Enqueue(new Incoming { Message = m, Pixels = pixels });
                    if (m.Kind == ServerKind.Closed) break;
                }
                inbox.Enqueue(new Incoming { Error = "Session closed" });
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
            catch (Exception e) { inbox.Enqueue(new Incoming { Error = "Error: " + e.Message }); }
            finally
            {
                if (connection == conn) connection = null;
                if (conn != null) conn.Dispose();
            }
        }

        void Disconnect()
        {
            var conn = connection;
            if (conn != null) { try { conn.CloseAsync().Wait(TimeSpan.FromSeconds(1)); } catch (Exception) { } }
            if (cts != null) { cts.Cancel(); cts.Dispose(); cts = null; }
            connection = null;
            status = "Disconnected";
        }

        void Send(ClientMessage message)
        {
            var conn = connection;
            if (conn == null) { status = "Not connected"; return; }
            conn.SendAsync(message).ContinueWith(t => inbox.Enqueue(new Incoming { Error = "Send failed: " + t.Exception.GetBaseException().Message }),
                                                 TaskContinuationOptions.OnlyOnFaulted);
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
                        for (int i = 0; i < c.NumFrames && take.Count < MaxTakeFrames; i++)
                        {
                            var f = new byte[frameBytes];
                            Buffer.BlockCopy(p.Pixels, i * frameBytes, f, 0, frameBytes);
                            take.Add(f);
                        }
                    }
                    acks.Enqueue(new KeyValuePair<ulong, long>(c.ChunkSeq, last));
                    break;
            }
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

            EditorGUILayout.LabelField("Take", take.Count + " frames");
            if (GUILayout.Button("Save take as PNG sequence") && take.Count > 0) SaveTake();
        }

        void SaveTake()
        {
            string folder = EditorUtility.SaveFolderPanel("Save take as PNG sequence", "", "shotstream_take");
            if (string.IsNullOrEmpty(folder) || session == null) return;
            int w = (int)session.Width, h = (int)session.Height, row = w * 4;
            var tex = new Texture2D(w, h, TextureFormat.RGBA32, false);
            var flipped = new byte[row * h];
            try
            {
                for (int i = 0; i < take.Count; i++)
                {
                    if (take[i].Length != flipped.Length) continue;  // a frame of another size
                    EditorUtility.DisplayProgressBar("ShotStream", "Saving frame " + (i + 1) + "/" + take.Count, (float)i / take.Count);
                    for (int y = 0; y < h; y++) Buffer.BlockCopy(take[i], y * row, flipped, (h - 1 - y) * row, row);
                    tex.LoadRawTextureData(flipped);
                    tex.Apply(false);
                    File.WriteAllBytes(Path.Combine(folder, "frame_" + i.ToString("D5") + ".png"), tex.EncodeToPNG());
                }
                status = "Saved " + take.Count + " frames to " + folder;
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
