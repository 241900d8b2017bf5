// Sample: keys 1/2/3 fire named game events through a ShotStreamDirector, whose prompts come from the
// EventShotsPromptMap asset; T starts and stops a take (an MP4 the service writes on its host).
// EventShots.unity is a ready scene with this wired up.
using System.Collections.Generic;
using ShotStream.Unity;
using UnityEngine;

namespace ShotStream.Samples
{
    public sealed class EventShotsSample : MonoBehaviour
    {
        [SerializeField] ShotStreamDirector director = null;
        [SerializeField] string character = "the knight";

        bool recording;

        void Start()
        {
            if (director == null) Debug.LogWarning("EventShots: no ShotStreamDirector assigned");
            else if (director.PromptMap == null) Debug.LogWarning("EventShots: the director has no Prompt Map (assign EventShotsPromptMap)");
            else Debug.Log("EventShots: keys 1/2/3 fire enter_hall, draw_sword, dragon_attacks (cut); T starts/stops a take");
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
            if (Pressed(1)) Fire("enter_hall");
            if (Pressed(2)) Fire("draw_sword");
            if (Pressed(3)) Fire("dragon_attacks");  // cuts the current shot
            if (Pressed(0) && director.Client != null)
            {
                if (recording) director.Client.StopTake();
                else director.Client.StartTake();  // the server names it <session>-take<n>
            }
        }

        // Keys 1/2/3 (digit 1-3) and T (0) this frame, through whichever input handling the project uses: the Input
        // System package when it is active (Active Input Handling: Input System Package or Both), else the legacy Input Manager.
        static bool Pressed(int digit)
        {
#if ENABLE_INPUT_SYSTEM
            var keyboard = UnityEngine.InputSystem.Keyboard.current;
            if (keyboard == null) return false;
            switch (digit)
            {
                case 1: return keyboard.digit1Key.wasPressedThisFrame;
                case 2: return keyboard.digit2Key.wasPressedThisFrame;
                case 3: return keyboard.digit3Key.wasPressedThisFrame;
                default: return keyboard.tKey.wasPressedThisFrame;
            }
#else
            switch (digit)
            {
                case 1: return Input.GetKeyDown(KeyCode.Alpha1);
                case 2: return Input.GetKeyDown(KeyCode.Alpha2);
                case 3: return Input.GetKeyDown(KeyCode.Alpha3);
                default: return Input.GetKeyDown(KeyCode.T);
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
