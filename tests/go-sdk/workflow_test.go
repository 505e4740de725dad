package gosdk

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtm-labs/client/dtmcli"
	"github.com/dtm-labs/client/dtmcli/dtmimp"
	"github.com/dtm-labs/client/workflow"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The workflow engine of the SDK is global: InitHTTP (here) and InitGrpc (in TestMain) set its
// coordinator and callback; useProtocol picks the one a test uses.
var wfInit sync.Once

func useProtocol(protocol string) {
	wfInit.Do(func() { workflow.InitHTTP(dtmHTTP, busiHTTP+"/workflow/resume") })
	workflow.SetProtocolForTest(protocol)
}

// httpWorkflowResume is the workflows' callback: the coordinator calls it to resume an
// unfinished workflow (op = its name, body = its input).
func httpWorkflowResume(w http.ResponseWriter, r *http.Request) {
	record(Call{Name: "WorkflowResume", Gid: r.URL.Query().Get("gid"), Op: r.URL.Query().Get("op"), Start: time.Now()})
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = workflow.ExecuteByQS(r.URL.Query(), body)
	}
	writeResult(w, err)
}

// quickWorkflow makes the coordinator call an unfinished workflow back after a second.
func quickWorkflow(wf *workflow.Workflow) {
	wf.TimeoutToFail = 1
	wf.RetryInterval = 1
}

var registered sync.Map

func register(name string, fn workflow.WfFunc) {
	if _, dup := registered.LoadOrStore(name, true); !dup {
		must(workflow.Register(name, fn, quickWorkflow))
	}
}

// httpTransfer is a workflow of two HTTP branches (TransOut, then TransIn), each undone on
// rollback.
func httpTransfer(wf *workflow.Workflow, data []byte) error {
	var req Req
	dtmimp.MustUnmarshal(data, &req)
	_, err := wf.NewBranch().OnRollback(func(bb *dtmcli.BranchBarrier) error {
		_, err := wf.NewRequest().SetBody(&req).Post(busiHTTP + "/TransOutRevert")
		return err
	}).NewRequest().SetBody(&req).Post(busiHTTP + "/TransOut")
	if err != nil {
		return err
	}
	_, err = wf.NewBranch().OnRollback(func(bb *dtmcli.BranchBarrier) error {
		_, err := wf.NewRequest().SetBody(&req).Post(busiHTTP + "/TransInRevert")
		return err
	}).NewRequest().SetBody(&req).Post(busiHTTP + "/TransIn")
	return err
}

var (
	wfConnOnce sync.Once
	wfConn     *grpc.ClientConn
)

// grpcTransfer is httpTransfer with gRPC branches, called through the SDK's interceptor.
func grpcTransfer(wf *workflow.Workflow, data []byte) error {
	wfConnOnce.Do(func() {
		var err error
		wfConn, err = grpc.Dial(busiGrpc, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithUnaryInterceptor(workflow.Interceptor))
		must(err)
	})
	var req Req
	dtmimp.MustUnmarshal(data, &req)
	call := func(ctx context.Context, method string) error {
		return wfConn.Invoke(ctx, "/busi.Busi/"+method, pb(&req), &emptypb.Empty{})
	}
	err := call(wf.NewBranch().OnRollback(func(bb *dtmcli.BranchBarrier) error {
		return call(wf.Context, "TransOutRevert")
	}).Context, "TransOut")
	if err != nil {
		return err
	}
	return call(wf.NewBranch().OnRollback(func(bb *dtmcli.BranchBarrier) error {
		return call(wf.Context, "TransInRevert")
	}).Context, "TransIn")
}

func input(req *Req) []byte {
	b, err := json.Marshal(req)
	must(err)
	return b
}

func TestWorkflowHTTP(t *testing.T) {
	needStore(t, "mysql")
	useProtocol(dtmimp.ProtocolHTTP)
	register("go-sdk-http", httpTransfer)
	from, to := newUsers(t)

	gid := newGid(t)
	noErr(t, "Execute", workflow.Execute("go-sdk-http", gid, input(&Req{Amount: 30, From: from, To: to, Store: "mysql"})))
	trans := waitStatus(t, gid, "succeed", 10*time.Second)
	equal(t, "trans_type", trans.Transaction.TransType, "workflow")
	equalList(t, "branches", branchStatuses(trans), []string{"01/action:succeed", "02/action:succeed"})
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn"})
	wantBalances(t, "mysql", from, to, 9970, 10030)

	// the same gid again: the workflow has finished, nothing is called
	noErr(t, "Execute again", workflow.Execute("go-sdk-http", gid, input(&Req{Amount: 30, From: from, To: to, Store: "mysql"})))
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn"})

	// a branch refusing: the workflow rolls back what it did
	gid = newGid(t)
	script(gid, "TransIn", dtmcli.ResultFailure)
	err := workflow.Execute("go-sdk-http", gid, input(&Req{Amount: 30, From: from, To: to, Store: "mysql"}))
	if !errors.Is(err, dtmcli.ErrFailure) || !strings.Contains(err.Error(), "scripted refusal") {
		t.Fatalf("Execute returned %v, not the branch's FAILURE", err)
	}
	trans = waitStatus(t, gid, "failed", 10*time.Second)
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn", "TransOutRevert"})
	wantBalances(t, "mysql", from, to, 9970, 10030)
	if !strings.Contains(trans.Transaction.RollbackReason, "scripted refusal") {
		t.Errorf("rollback_reason %q is not the branch's error", trans.Transaction.RollbackReason)
	}
}

func TestWorkflowGrpc(t *testing.T) {
	needStore(t, "postgres")
	useProtocol(dtmimp.ProtocolGRPC)
	register("go-sdk-grpc", grpcTransfer)
	from, to := newUsers(t)

	gid := newGid(t)
	noErr(t, "Execute", workflow.Execute("go-sdk-grpc", gid, input(&Req{Amount: 30, From: from, To: to, Store: "postgres"})))
	trans := waitStatus(t, gid, "succeed", 10*time.Second)
	equal(t, "protocol", trans.Transaction.Protocol, "grpc")
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn"})
	wantBalances(t, "postgres", from, to, 9970, 10030)

	gid = newGid(t)
	script(gid, "TransIn", dtmcli.ResultFailure)
	err := workflow.Execute("go-sdk-grpc", gid, input(&Req{Amount: 30, From: from, To: to, Store: "postgres"}))
	if !errors.Is(err, dtmcli.ErrFailure) {
		t.Fatalf("Execute returned %v, not the branch's FAILURE", err)
	}
	waitStatus(t, gid, "failed", 10*time.Second)
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn", "TransOutRevert"})
	wantBalances(t, "postgres", from, to, 9970, 10030)
}

// The app stops after the first branch (its second call errs, so Execute returns without
// finishing); the coordinator calls the workflow back and it resumes: the first branch's
// recorded result is reused, the second is called again.
func TestWorkflowHTTPResumed(t *testing.T) {
	needStore(t, "mysql")
	useProtocol(dtmimp.ProtocolHTTP)
	register("go-sdk-http-resumed", httpTransfer)
	from, to := newUsers(t)
	gid := newGid(t)
	script(gid, "TransIn", "ERROR")
	err := workflow.Execute("go-sdk-http-resumed", gid, input(&Req{Amount: 30, From: from, To: to, Store: "mysql"}))
	if err == nil {
		t.Fatalf("Execute of an interrupted workflow returned no error")
	}
	equal(t, "status after the interruption", query(t, gid).Transaction.Status, "prepared")
	trans := waitStatus(t, gid, "succeed", 15*time.Second)
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn", "WorkflowResume", "TransIn"})
	equalList(t, "branches", branchStatuses(trans), []string{"01/action:succeed", "02/action:succeed"})
	wantBalances(t, "mysql", from, to, 9970, 10030)
}

func TestWorkflowGrpcResumed(t *testing.T) {
	needStore(t, "postgres")
	useProtocol(dtmimp.ProtocolGRPC)
	register("go-sdk-grpc-resumed", grpcTransfer)
	from, to := newUsers(t)
	gid := newGid(t)
	script(gid, "TransIn", "ERROR")
	err := workflow.Execute("go-sdk-grpc-resumed", gid, input(&Req{Amount: 30, From: from, To: to, Store: "postgres"}))
	if err == nil {
		t.Fatalf("Execute of an interrupted workflow returned no error")
	}
	waitStatus(t, gid, "succeed", 15*time.Second)
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn", "TransIn"})
	wantBalances(t, "postgres", from, to, 9970, 10030)
}

// workflow.DoXa: local XA branches on MariaDB and PostgreSQL, committed or rolled back by the
// workflow's outcome.
func TestWorkflowXa(t *testing.T) {
	needStore(t, "mysql")
	needStore(t, "postgres")
	useProtocol(dtmimp.ProtocolHTTP)
	register("go-sdk-xa", func(wf *workflow.Workflow, data []byte) error {
		var req Req
		dtmimp.MustUnmarshal(data, &req)
		_, err := wf.NewBranch().DoXa(*mysqlConf, func(db *sql.DB) ([]byte, error) {
			return nil, adjust(db, dtmcli.DBTypeMysql, req.From, -req.Amount)
		})
		if err != nil {
			return err
		}
		_, err = wf.NewBranch().DoXa(*pgConf, func(db *sql.DB) ([]byte, error) {
			return nil, adjust(db, dtmcli.DBTypePostgres, req.To, req.Amount)
		})
		return err
	})
	from, to := newUsers(t)
	gid := newGid(t)
	noErr(t, "Execute", workflow.Execute("go-sdk-xa", gid, input(&Req{Amount: 30, From: from, To: to})))
	waitStatus(t, gid, "succeed", 10*time.Second)
	equal(t, "mysql balance", balance(t, "mysql", from), 9970)
	equal(t, "postgres balance", balance(t, "postgres", to), 10030)
	noPreparedXa(t, gid)

	// the PostgreSQL branch refuses (the amount is more than the balance): MariaDB's rolls back
	gid = newGid(t)
	err := workflow.Execute("go-sdk-xa", gid, input(&Req{Amount: -20000, From: from, To: to}))
	if !errors.Is(err, dtmcli.ErrFailure) {
		t.Fatalf("Execute returned %v, not the branch's FAILURE", err)
	}
	waitStatus(t, gid, "failed", 10*time.Second)
	equal(t, "mysql balance", balance(t, "mysql", from), 9970)
	equal(t, "postgres balance", balance(t, "postgres", to), 10030)
	noPreparedXa(t, gid)
}
