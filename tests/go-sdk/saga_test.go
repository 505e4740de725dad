package gosdk

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dtm-labs/client/dtmcli"
	"github.com/dtm-labs/client/dtmgrpc"
)

func httpSaga(gid string, req *Req) *dtmcli.Saga {
	return dtmcli.NewSaga(dtmHTTP, gid).
		Add(busiHTTP+"/TransOut", busiHTTP+"/TransOutRevert", req).
		Add(busiHTTP+"/TransIn", busiHTTP+"/TransInRevert", req)
}

func grpcSaga(gid string, req *Req, opts ...dtmgrpc.TransBaseOption) *dtmgrpc.SagaGrpc {
	return dtmgrpc.NewSagaGrpc(dtmGrpc, gid, opts...).
		Add(grpcURL("TransOut"), grpcURL("TransOutRevert"), pb(req)).
		Add(grpcURL("TransIn"), grpcURL("TransInRevert"), pb(req))
}

var succeededSaga = []string{"01/compensate:prepared", "01/action:succeed", "02/compensate:prepared", "02/action:succeed"}

func TestSagaHTTPSequential(t *testing.T) {
	needStore(t, "mysql")
	from, to := newUsers(t)
	gid := newGid(t)
	noErr(t, "submit", httpSaga(gid, &Req{Amount: 30, From: from, To: to, Store: "mysql"}).Submit())
	trans := waitStatus(t, gid, "succeed", 10*time.Second)
	equalList(t, "branches", branchStatuses(trans), succeededSaga)
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn"})
	equal(t, "protocol", trans.Transaction.Protocol, "http")
	wantBalances(t, "mysql", from, to, 9970, 10030)
}

func TestSagaGrpcSequential(t *testing.T) {
	needStore(t, "postgres")
	from, to := newUsers(t)
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	noErr(t, "submit", grpcSaga(gid, &Req{Amount: 30, From: from, To: to, Store: "postgres"}).Submit())
	trans := waitStatus(t, gid, "succeed", 10*time.Second)
	equalList(t, "branches", branchStatuses(trans), succeededSaga)
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn"})
	equal(t, "protocol", trans.Transaction.Protocol, "grpc")
	wantBalances(t, "postgres", from, to, 9970, 10030)
}

// Two TransOut branches at once, then TransIn once both are done (AddBranchOrder).
func TestSagaHTTPConcurrentOrders(t *testing.T) {
	needStore(t, "mysql")
	a, to := newUsers(t)
	b, _ := newUsers(t)
	gid := newGid(t)
	saga := dtmcli.NewSaga(dtmHTTP, gid).
		Add(busiHTTP+"/TransOut", busiHTTP+"/TransOutRevert", &Req{Amount: 10, From: a, Store: "mysql"}).
		Add(busiHTTP+"/TransOut", busiHTTP+"/TransOutRevert", &Req{Amount: 20, From: b, Store: "mysql"}).
		Add(busiHTTP+"/TransIn", busiHTTP+"/TransInRevert", &Req{Amount: 30, To: to, Store: "mysql"}).
		SetConcurrent().
		AddBranchOrder(2, []int{0, 1})
	saga.WaitResult = true
	noErr(t, "submit", saga.Submit())
	waitStatus(t, gid, "succeed", 10*time.Second)
	checkOrdered(t, gid)
	equal(t, "balance of a", balance(t, "mysql", a), 9990)
	equal(t, "balance of b", balance(t, "mysql", b), 9980)
	equal(t, "balance of to", balance(t, "mysql", to), 10030)
}

func TestSagaGrpcConcurrentOrders(t *testing.T) {
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	req := &Req{Amount: 30}
	saga := dtmgrpc.NewSagaGrpc(dtmGrpc, gid).
		Add(grpcURL("TransOut"), grpcURL("TransOutRevert"), pb(req)).
		Add(grpcURL("TransOut"), grpcURL("TransOutRevert"), pb(req)).
		Add(grpcURL("TransIn"), grpcURL("TransInRevert"), pb(req)).
		EnableConcurrent().
		AddBranchOrder(2, []int{0, 1})
	noErr(t, "submit", saga.Submit())
	waitStatus(t, gid, "succeed", 10*time.Second)
	checkOrdered(t, gid)
}

// checkOrdered checks that TransIn started after both TransOut calls had answered.
func checkOrdered(t *testing.T, gid string) {
	t.Helper()
	var outs []Call
	var in *Call
	for _, c := range callsOf(gid) {
		c := c
		if c.Name == "TransOut" {
			outs = append(outs, c)
		} else if c.Name == "TransIn" {
			in = &c
		}
	}
	if len(outs) != 2 || in == nil {
		t.Fatalf("calls: %v", namesOf(gid))
	}
	for _, out := range outs {
		if in.Start.Before(out.End) {
			t.Fatalf("TransIn (branch %s) started before TransOut (branch %s) had answered", in.BranchID, out.BranchID)
		}
	}
}

// A branch that stays ONGOING past TimeoutToFail: the saga fails and is compensated.
func TestSagaHTTPTimeoutToFail(t *testing.T) {
	needStore(t, "mysql")
	from, to := newUsers(t)
	gid := newGid(t)
	script(gid, "TransIn", repeat(dtmcli.ResultOngoing, 100)...)
	saga := httpSaga(gid, &Req{Amount: 30, From: from, To: to, Store: "mysql"})
	saga.TimeoutToFail = 2
	saga.RetryInterval = 1
	noErr(t, "submit", saga.Submit())
	trans := waitStatus(t, gid, "failed", 15*time.Second)
	if !strings.Contains(trans.Transaction.RollbackReason, "Timeout") {
		t.Errorf("rollback_reason %q does not tell of the timeout", trans.Transaction.RollbackReason)
	}
	names := namesOf(gid)
	equalList(t, "last calls", names[len(names)-2:], []string{"TransInRevert", "TransOutRevert"})
	wantBalances(t, "mysql", from, to, 10000, 10000)
}

func TestSagaGrpcTimeoutToFail(t *testing.T) {
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	script(gid, "TransIn", repeat(dtmcli.ResultOngoing, 100)...)
	saga := grpcSaga(gid, &Req{Amount: 30})
	saga.TimeoutToFail = 2
	saga.RetryInterval = 1
	noErr(t, "submit", saga.Submit())
	waitStatus(t, gid, "failed", 15*time.Second)
	names := namesOf(gid)
	equalList(t, "last calls", names[len(names)-2:], []string{"TransInRevert", "TransOutRevert"})
}

// An ONGOING branch is called again RetryInterval later (not after the default 10 s).
func TestSagaHTTPRetryInterval(t *testing.T) {
	gid := newGid(t)
	script(gid, "TransIn", dtmcli.ResultOngoing)
	saga := httpSaga(gid, &Req{Amount: 30})
	saga.RetryInterval = 2
	noErr(t, "submit", saga.Submit())
	waitStatus(t, gid, "succeed", 15*time.Second)
	checkRetryGap(t, gid, "TransIn", 2*time.Second)
}

func TestSagaGrpcRetryInterval(t *testing.T) {
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	script(gid, "TransOut", dtmcli.ResultOngoing)
	saga := grpcSaga(gid, &Req{Amount: 30})
	saga.RetryInterval = 2
	noErr(t, "submit", saga.Submit())
	waitStatus(t, gid, "succeed", 15*time.Second)
	checkRetryGap(t, gid, "TransOut", 2*time.Second)
}

// checkRetryGap checks that `name` was called twice, about `interval` apart.
func checkRetryGap(t *testing.T, gid, name string, interval time.Duration) {
	t.Helper()
	var starts []time.Time
	for _, c := range callsOf(gid) {
		if c.Name == name {
			starts = append(starts, c.Start)
		}
	}
	if len(starts) != 2 {
		t.Fatalf("%s was called %d times, not twice: %v", name, len(starts), namesOf(gid))
	}
	gap := starts[1].Sub(starts[0])
	if gap < interval-300*time.Millisecond || gap > interval+4*time.Second {
		t.Fatalf("%s was retried %v after its ONGOING, with RetryInterval %v", name, gap, interval)
	}
}

func TestSagaHTTPBranchHeaders(t *testing.T) {
	gid := newGid(t)
	saga := httpSaga(gid, &Req{Amount: 30})
	saga.BranchHeaders = map[string]string{"test_header": "test", "X-Tenant": "t1"}
	saga.WaitResult = true
	noErr(t, "submit", saga.Submit())
	for _, c := range callsOf(gid) {
		equal(t, c.Name+" test_header", c.Headers["test_header"], "test")
		equal(t, c.Name+" x-tenant", c.Headers["x-tenant"], "t1")
	}
	equal(t, "calls", len(callsOf(gid)), 2)
}

func TestSagaGrpcBranchHeaders(t *testing.T) {
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	saga := grpcSaga(gid, &Req{Amount: 30}, dtmgrpc.WithBranchHeaders(map[string]string{"test_header": "test"}))
	saga.WaitResult = true
	noErr(t, "submit", saga.Submit())
	for _, c := range callsOf(gid) {
		equal(t, c.Name+" test_header", c.Headers["test_header"], "test")
		equal(t, c.Name+" dtm-trans_type", c.Headers["dtm-trans_type"], "saga")
	}
	equal(t, "calls", len(callsOf(gid)), 2)
}

// WaitResult: Submit returns once the saga has finished, with its outcome.
func TestSagaHTTPWaitResult(t *testing.T) {
	needStore(t, "mysql")
	from, to := newUsers(t)
	gid := newGid(t)
	saga := httpSaga(gid, &Req{Amount: 30, From: from, To: to, Store: "mysql"})
	saga.WaitResult = true
	noErr(t, "submit", saga.Submit())
	equal(t, "status right after Submit", query(t, gid).Transaction.Status, "succeed")
	equal(t, "balance", balance(t, "mysql", to), 10030)

	gid = newGid(t)
	script(gid, "TransIn", dtmcli.ResultFailure)
	saga = httpSaga(gid, &Req{Amount: 30, From: from, To: to, Store: "mysql"})
	saga.WaitResult = true
	err := saga.Submit()
	if err == nil || !strings.Contains(err.Error(), "FAILURE") || !strings.Contains(err.Error(), "scripted refusal") {
		t.Fatalf("Submit of a failing saga with WaitResult returned %v", err)
	}
	trans := query(t, gid)
	equal(t, "status right after Submit", trans.Transaction.Status, "failed")
	equal(t, "balance", balance(t, "mysql", from), 9970)
}

func TestSagaGrpcWaitResult(t *testing.T) {
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	script(gid, "TransIn", dtmcli.ResultFailure)
	saga := grpcSaga(gid, &Req{Amount: 30})
	saga.WaitResult = true
	err := saga.Submit()
	if err == nil || !errors.Is(dtmgrpc.GrpcError2DtmError(err), dtmcli.ErrFailure) {
		t.Fatalf("Submit of a failing saga with WaitResult returned %v, not FAILURE", err)
	}
	equal(t, "status right after Submit", query(t, gid).Transaction.Status, "failed")
}

// A branch answering FAILURE: the saga is compensated, newest branch first.
func TestSagaHTTPFailureCompensates(t *testing.T) {
	needStore(t, "mysql")
	from, to := newUsers(t)
	gid := newGid(t)
	script(gid, "TransIn", dtmcli.ResultFailure)
	noErr(t, "submit", httpSaga(gid, &Req{Amount: 30, From: from, To: to, Store: "mysql"}).Submit())
	trans := waitStatus(t, gid, "failed", 10*time.Second)
	equalList(t, "branches", branchStatuses(trans),
		[]string{"01/compensate:succeed", "01/action:succeed", "02/compensate:succeed", "02/action:failed"})
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn", "TransInRevert", "TransOutRevert"})
	wantBalances(t, "mysql", from, to, 10000, 10000)
}

func TestSagaGrpcFailureCompensates(t *testing.T) {
	needStore(t, "postgres")
	from, to := newUsers(t)
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	script(gid, "TransIn", dtmcli.ResultFailure)
	noErr(t, "submit", grpcSaga(gid, &Req{Amount: 30, From: from, To: to, Store: "postgres"}).Submit())
	trans := waitStatus(t, gid, "failed", 10*time.Second)
	equalList(t, "branches", branchStatuses(trans),
		[]string{"01/compensate:succeed", "01/action:succeed", "02/compensate:succeed", "02/action:failed"})
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn", "TransInRevert", "TransOutRevert"})
	wantBalances(t, "postgres", from, to, 10000, 10000)
}

// ONGOING, then an error: the branch is retried until it succeeds.
func TestSagaHTTPOngoingRetried(t *testing.T) {
	needStore(t, "mysql")
	from, to := newUsers(t)
	gid := newGid(t)
	script(gid, "TransOut", dtmcli.ResultOngoing, "ERROR")
	saga := httpSaga(gid, &Req{Amount: 30, From: from, To: to, Store: "mysql"})
	saga.RetryInterval = 1
	noErr(t, "submit", saga.Submit())
	trans := waitStatus(t, gid, "succeed", 15*time.Second)
	equalList(t, "branches", branchStatuses(trans), succeededSaga)
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransOut", "TransOut", "TransIn"})
	wantBalances(t, "mysql", from, to, 9970, 10030)
}

func TestSagaGrpcOngoingRetried(t *testing.T) {
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	script(gid, "TransIn", dtmcli.ResultOngoing, "ERROR")
	saga := grpcSaga(gid, &Req{Amount: 30})
	saga.RetryInterval = 1
	noErr(t, "submit", saga.Submit())
	waitStatus(t, gid, "succeed", 15*time.Second)
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn", "TransIn", "TransIn"})
}

func repeat(s string, n int) []string {
	r := make([]string, n)
	for i := range r {
		r[i] = s
	}
	return r
}
