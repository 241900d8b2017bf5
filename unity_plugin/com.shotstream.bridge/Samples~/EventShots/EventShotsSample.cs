// Sample: keys 1/2/3 fire named game events through a ShotStreamDirector, whose prompts come from the
// EventShotsPromptMap asset; C plays a cutscene, a Timeline of shots with gameplay signals in between (needs the Timeline
// package, com.unity.timeline 1.6+); T starts and stops a take (an MP4 the service writes on its host).
// EventShots.unity is a ready scene with this wired up.
using System.Collections.Generic;
using ShotStream.Unity;
using UnityEngine;
#if SHOTSTREAM_TIMELINE
using ShotStream.Timeline;
using UnityEngine.Playables;
using UnityEngine.Timeline;
#endif

namespace ShotStream.Samples
{
    public sealed class EventShotsSample : MonoBehaviour
#if SHOTSTREAM_TIMELINE
        , INotificationReceiver
#endif
    {
        [SerializeField] ShotStreamDirector director = null;
        [SerializeField] string character = "the knight";
        [Tooltip("Raised at each step of the cutscene (key C): start, entered, sword drawn, end. Hook gameplay to it (a door, a sound, the camera).")]
        public GameEventShotEvent cutsceneStep = new GameEventShotEvent();

        bool recording;

        enum SampleKey { One, Two, Three, Take, Cutscene }

        void Start()
        {
            if (director == null) Debug.LogWarning("EventShots: no ShotStreamDirector assigned");
            else if (director.PromptMap == null) Debug.LogWarning("EventShots: the director has no Prompt Map (assign EventShotsPromptMap)");
            else Debug.Log("EventShots: keys 1/2/3 fire enter_hall, draw_sword, dragon_attacks (cut); C plays the cutscene; T starts/stops a take");
            if (director != null && director.Client != null)
            {
                var client = director.Client;
                client.takeStarted.AddListener(t => { recording = true; Debug.Log("EventShots: recording take " + t.Name + " to " + t.Path); });
                client.takeSaved.AddListener(t => { recording = false; Debug.Log("EventShots: take saved: " + t.Path + " (" + t.Frames + " frames)"); });
            }
        }

        void Update()
        {
            if (director == null) return;
            if (Pressed(SampleKey.One)) Fire("enter_hall");
            if (Pressed(SampleKey.Two)) Fire("draw_sword");
            if (Pressed(SampleKey.Three)) Fire("dragon_attacks");  // cuts the current shot
            if (Pressed(SampleKey.Cutscene)) PlayCutscene();
            if (Pressed(SampleKey.Take) && director.Client != null)
            {
                if (recording) director.Client.StopTake();
                else director.Client.StartTake();  // the server names it <session>-take<n>
            }
        }

#if SHOTSTREAM_TIMELINE
        PlayableDirector cutscenePlayer;
        TimelineAsset cutscene;
        bool inCutscene;

        // The cutscene is a Timeline: a ShotStream track bound to the client's screen, with three shot clips (enter_hall,
        // draw_sword, then dragon_attacks, which cuts), and signals on the timeline's marker track where the gameplay steps
        // go ("entered" and "sword drawn", each at the end of the clip before it); "start" is raised when it starts and
        // "end" when the director stops after the last clip. The track cues each clip ahead of its start and holds the
        // director while a clip's first frame is late or its shot is still on screen at the clip's end, so each signal
        // comes once the shot before it has ended on screen (not when the server finished it, up to 2 s earlier), and the
        // dragon cuts in right after the sword is drawn.
        // A sample cannot ship a .playable asset authored in the editor here, so this one is built in code when C is pressed
        // (clip lengths from the session's chunk length). In your project, author the same in the Timeline window (a
        // ShotStream Track, Shot Clips, a Signal Track or markers with a Signal Receiver) and play it with a
        // PlayableDirector; see the sample's README.
        void PlayCutscene()
        {
            if (inCutscene) return;  // C again while it plays: nothing
            var client = director.Client;
            var screen = client != null ? client.Screen : null;
            if (screen == null || director.PromptMap == null)
            {
                Debug.LogWarning("EventShots: the cutscene needs the director's Client with a Screen and a Prompt Map");
                return;
            }
            if (cutscenePlayer == null)
            {
                cutscenePlayer = gameObject.AddComponent<PlayableDirector>();  // the marker track's signals come to this GameObject
                cutscenePlayer.playOnAwake = false;
                cutscenePlayer.extrapolationMode = DirectorWrapMode.None;  // stops after the last clip
                cutscenePlayer.stopped += OnCutsceneStopped;
            }
            if (cutscene != null) Destroy(cutscene);
            ShotStreamTrack track;
            cutscene = BuildCutscene(client, out track);
            cutscenePlayer.SetGenericBinding(track, screen);  // the track's shots play on the client's screen
            inCutscene = true;
            Step("start");
            cutscenePlayer.Play(cutscene);
        }

        TimelineAsset BuildCutscene(ShotStreamClient client, out ShotStreamTrack track)
        {
            var timeline = ScriptableObject.CreateInstance<TimelineAsset>();
            timeline.name = "EventShots cutscene";
            track = timeline.CreateTrack<ShotStreamTrack>(null, "Shots");
            track.PromptMap = director.PromptMap;
            timeline.CreateMarkerTrack();
            // a shot's first chunk has the session's FramesFirstChunk frames, the others FramesPerChunk (before a session
            // opens: 9 and 12 at 16 fps, the service's defaults)
            var session = client.Session;
            bool known = session != null && session.Fps > 0 && session.FramesPerChunk > 0;
            double fps = known ? session.Fps : 16, first = known && session.FramesFirstChunk > 0 ? session.FramesFirstChunk : 9, more = known ? session.FramesPerChunk : 12;
            double t = 0;
            foreach (var shot in new[] { new[] { "enter_hall", "entered" }, new[] { "draw_sword", "sword drawn" }, new[] { "dragon_attacks", "" } })
            {
                var clip = track.CreateClip<ShotStreamShotClip>();
                ((ShotStreamShotClip)clip.asset).SetGameEvent(shot[0], "character", character);
                uint chunks = director.PromptMap.Resolve(shot[0], new Dictionary<string, string> { { "character", character } }).Chunks;
                clip.displayName = shot[0];
                clip.start = t;
                // the shot's length on screen (chunks 0, the server's default, is taken as 1: the track holds while it runs over)
                clip.duration = (first + (System.Math.Max(1u, chunks) - 1) * more) / fps;
                t = clip.end;
                if (shot[1].Length == 0) continue;
                var signal = ScriptableObject.CreateInstance<SignalAsset>();
                signal.name = shot[1];
                timeline.markerTrack.CreateMarker<SignalEmitter>(t).asset = signal;
            }
            return timeline;
        }

        /// <summary>Timeline: the cutscene's signals (its marker track sends them to the director's GameObject, this one).</summary>
        public void OnNotify(Playable origin, INotification notification, object context)
        {
            var signal = notification as SignalEmitter;
            if (inCutscene && signal != null && signal.asset != null) Step(signal.asset.name);
        }

        void OnCutsceneStopped(PlayableDirector player)
        {
            if (!inCutscene) return;
            inCutscene = false;
            Step("end");
        }

        void Step(string step)
        {
            Debug.Log("EventShots: cutscene " + step);
            cutsceneStep.Invoke(step);
        }
#else
        void PlayCutscene()
        {
            Debug.LogWarning("EventShots: the cutscene (key C) is a Timeline: add the Timeline package (com.unity.timeline 1.6+) to the project");
        }
#endif

        // Keys 1/2/3, T and C this frame, through whichever input handling the project uses: the Input System package when
        // it is active (Active Input Handling: Input System Package or Both), else the legacy Input Manager.
        static bool Pressed(SampleKey key)
        {
#if ENABLE_INPUT_SYSTEM
            var keyboard = UnityEngine.InputSystem.Keyboard.current;
            if (keyboard == null) return false;
            switch (key)
            {
                case SampleKey.One: return keyboard.digit1Key.wasPressedThisFrame;
                case SampleKey.Two: return keyboard.digit2Key.wasPressedThisFrame;
                case SampleKey.Three: return keyboard.digit3Key.wasPressedThisFrame;
                case SampleKey.Take: return keyboard.tKey.wasPressedThisFrame;
                default: return keyboard.cKey.wasPressedThisFrame;
            }
#else
            switch (key)
            {
                case SampleKey.One: return Input.GetKeyDown(KeyCode.Alpha1);
                case SampleKey.Two: return Input.GetKeyDown(KeyCode.Alpha2);
                case SampleKey.Three: return Input.GetKeyDown(KeyCode.Alpha3);
                case SampleKey.Take: return Input.GetKeyDown(KeyCode.T);
                default: return Input.GetKeyDown(KeyCode.C);
            }
#endif
        }

        void Fire(string eventName)
        {
            try { Debug.Log("EventShots: " + eventName + " -> " + director.Fire(eventName, new Dictionary<string, string> { { "character", character } })); }
            catch (System.Exception e) { Debug.LogException(e); }
        }
    }
}
