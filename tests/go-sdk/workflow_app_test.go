package gosdk

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/dtm-labs/client/workflow"
)

// A workflow app in a process of its own (this test binary again, running
// TestWorkflowAppChild) is killed in the middle of its workflow; started again, it is called
// back by the coordinator and finishes the workflow from its recorded progress.
func TestWorkflowHTTPKilledApp(t *testing.T) {
	needStore(t, "mysql")
	from, to := newUsers(t)
	gid := newGid(t)
	port := freePort(t)
	script(gid, "TransIn", "HANG")
	data := string(input(&Req{Amount: 30, From: from, To: to, Store: "mysql"}))

	first, out1 := startApp(t, "run", port, gid, data)
	waitCall(t, gid, "TransIn-hang")
	must(first.Process.Kill())
	_ = first.Wait()
	equal(t, "status after the kill", query(t, gid).Transaction.Status, "prepared")

	_, out2 := startApp(t, "serve", port, gid, "")
	trans := waitStatus(t, gid, "succeed", 30*time.Second)
	equalList(t, "branches", branchStatuses(trans), []string{"01/action:succeed", "02/action:succeed"})
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn-hang", "TransIn", "TransIn"})
	wantBalances(t, "mysql", from, to, 9970, 10030)
	if t.Failed() {
		t.Logf("app output:\n%s\n--- restarted:\n%s", out1, out2)
	}
}

// TestWorkflowAppChild is the app of TestWorkflowHTTPKilledApp; it runs only as that test's
// child process.
func TestWorkflowAppChild(t *testing.T) {
	mode := os.Getenv("GOSDK_APP_MODE")
	if mode == "" {
		t.Skip("the app process of TestWorkflowHTTPKilledApp")
	}
	// the callback is this process's own HTTP service; branches go to the parent's
	workflow.InitHTTP(dtmHTTP, busiHTTP+"/workflow/resume")
	busiHTTP = os.Getenv("GOSDK_APP_BUSI")
	must(workflow.Register("go-sdk-killed-app", httpTransfer, quickWorkflow))
	if mode == "run" {
		err := workflow.Execute("go-sdk-killed-app", os.Getenv("GOSDK_APP_GID"), []byte(os.Getenv("GOSDK_APP_DATA")))
		t.Fatalf("the workflow was to be killed, yet Execute returned %v", err)
	}
	time.Sleep(60 * time.Second) // serving the callback until killed
}

func startApp(t *testing.T, mode string, port int, gid, data string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestWorkflowAppChild$", "-test.v")
	cmd.Env = append(os.Environ(), "GOSDK_APP_MODE="+mode, "GOSDK_HTTP_PORT="+strconv.Itoa(port),
		"GOSDK_APP_BUSI="+busiHTTP, "GOSDK_APP_GID="+gid, "GOSDK_APP_DATA="+data)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	noErr(t, "start the app", cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, out
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	noErr(t, "listen", err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitCall(t *testing.T, gid, name string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range namesOf(gid) {
			if n == name {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s was not called: %v", name, namesOf(gid))
}
