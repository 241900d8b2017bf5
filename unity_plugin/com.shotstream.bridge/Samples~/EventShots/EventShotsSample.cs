// Sample: keys 1/2/3 fire named game events through a ShotStreamDirector, whose prompts come from the
// EventShotsPromptMap asset; C plays a cutscene (shots and gameplay steps, each step once the shot before it has ended
// on screen); T starts and stops a take (an MP4 the service writes on its host).
// EventShots.unity is a ready scene with this wired up.
using System.Collections;
using System.Collections.Generic;
using ShotStream.Unity;
using UnityEngine;

namespace ShotStream.Samples
{
    public sealed class EventShotsSample : MonoBehaviour
    {
        [SerializeField] ShotStreamDirector director = null;
        [SerializeField] string character = "the knight";
        [Tooltip("Raised at each step of the cutscene (key C): start, entered, sword drawn, end. Hook gameplay to it (a door, a sound, the camera).")]
        public GameEventShotEvent cutsceneStep = new GameEventShotEvent();

        bool recording;
        bool inCutscene;

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
            if (Pressed(SampleKey.Cutscene) && !inCutscene) StartCoroutine(Cutscene());
            if (Pressed(SampleKey.Take) && director.Client != null)
            {
                if (recording) director.Client.StopTake();
                else director.Client.StartTake();  // the server names it <session>-take<n>
            }
        }

        // The cutscene: gameplay steps in between shots, each step once the shot before it has ended on screen (not when
        // the server finished it, up to 2 s earlier). The first two shots are cued at once, so the second follows the
        // first without a gap; the dragon then cuts in.
        IEnumerator Cutscene()
        {
            inCutscene = true;
            var p = new Dictionary<string, string> { { "character", character } };
            Step("start");
            ShotPlayback enter = director.PlayShot("enter_hall", p);
            ShotPlayback sword = director.PlayShot("draw_sword", p);
            yield return enter;
            Step("entered", enter);
            yield return sword;
            Step("sword drawn", sword);
            ShotPlayback dragon = director.PlayShot("dragon_attacks", p);
            yield return dragon;
            Step("end", dragon);
            inCutscene = false;
        }

        void Step(string step, ShotPlayback after = null)
        {
            if (after != null && after.Failed) Debug.LogWarning("EventShots: " + after.Error);
            Debug.Log("EventShots: cutscene " + step);
            cutsceneStep.Invoke(step);
        }

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
