package gosdk

import (
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dtm-labs/client/dtmcli"
	"github.com/dtm-labs/client/dtmcli/dtmimp"
	"github.com/dtm-labs/client/dtmgrpc"
	"github.com/go-resty/resty/v2"
	"google.golang.org/protobuf/types/known/emptypb"
)

// phase2Calls lists "Name@branch" of gid's confirm or cancel calls (op = confirm|cancel), sorted.
func phase2Calls(gid, op string) []string {
	s := []string{}
	for _, c := range callsOf(gid) {
		if c.Op == op {
			s = append(s, c.Name+"@"+c.BranchID)
		}
	}
	sort.Strings(s)
	return s
}

// TCC with a nested branch: the try of branch 02 registers and tries branch 0201 itself.
func TestTccHTTPConfirmNested(t *testing.T) {
	needStore(t, "mysql")
	from, to := newUsers(t)
	gid := newGid(t)
	req := &Req{Amount: 30, From: from, To: to, Store: "mysql"}
	err := dtmcli.TccGlobalTransaction(dtmHTTP, gid, func(tcc *dtmcli.Tcc) (*resty.Response, error) {
		if _, err := tcc.CallBranch(req, busiHTTP+"/TransOutTry", busiHTTP+"/TransOutConfirm", busiHTTP+"/TransOutCancel"); err != nil {
			return nil, err
		}
		return tcc.CallBranch(req, busiHTTP+"/TransInTccNested", busiHTTP+"/TransInNestedConfirm", busiHTTP+"/TransInNestedCancel")
	})
	noErr(t, "TccGlobalTransaction", err)
	trans := waitStatus(t, gid, "succeed", 10*time.Second)
	equalList(t, "branches", branchStatuses(trans), []string{
		"01/cancel:prepared", "01/confirm:succeed", "02/cancel:prepared", "02/confirm:succeed",
		"0201/cancel:prepared", "0201/confirm:succeed"})
	equalList(t, "confirms", phase2Calls(gid, "confirm"),
		[]string{"TransInConfirm@0201", "TransInNestedConfirm@02", "TransOutConfirm@01"})
	equalList(t, "cancels", phase2Calls(gid, "cancel"), []string{})
	wantBalances(t, "mysql", from, to, 9970, 10030)
}

// A try refusing: TccGlobalTransaction returns the FAILURE and every branch is cancelled.
func TestTccHTTPCancel(t *testing.T) {
	needStore(t, "mysql")
	from, to := newUsers(t)
	gid := newGid(t)
	script(gid, "TransInTry", dtmcli.ResultFailure)
	req := &Req{Amount: 30, From: from, To: to, Store: "mysql"}
	err := dtmcli.TccGlobalTransaction(dtmHTTP, gid, func(tcc *dtmcli.Tcc) (*resty.Response, error) {
		if _, err := tcc.CallBranch(req, busiHTTP+"/TransOutTry", busiHTTP+"/TransOutConfirm", busiHTTP+"/TransOutCancel"); err != nil {
			return nil, err
		}
		return tcc.CallBranch(req, busiHTTP+"/TransInTry", busiHTTP+"/TransInConfirm", busiHTTP+"/TransInCancel")
	})
	if !errors.Is(err, dtmcli.ErrFailure) || !strings.Contains(err.Error(), "scripted refusal") {
		t.Fatalf("TccGlobalTransaction returned %v, not the try's FAILURE", err)
	}
	trans := waitStatus(t, gid, "failed", 10*time.Second)
	equalList(t, "branches", branchStatuses(trans), []string{
		"01/cancel:succeed", "01/confirm:prepared", "02/cancel:succeed", "02/confirm:prepared"})
	equalList(t, "cancels", phase2Calls(gid, "cancel"), []string{"TransInCancel@02", "TransOutCancel@01"})
	if !strings.Contains(trans.Transaction.RollbackReason, "scripted refusal") {
		t.Errorf("rollback_reason %q is not the try's error", trans.Transaction.RollbackReason)
	}
	wantBalances(t, "mysql", from, to, 10000, 10000)
}

func TestTccGrpcConfirmNested(t *testing.T) {
	needStore(t, "postgres")
	from, to := newUsers(t)
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	req := pb(&Req{Amount: 30, From: from, To: to, Store: "postgres"})
	err := dtmgrpc.TccGlobalTransaction(dtmGrpc, gid, func(tcc *dtmgrpc.TccGrpc) error {
		if err := tcc.CallBranch(req, grpcURL("TransOutTry"), grpcURL("TransOutConfirm"), grpcURL("TransOutCancel"), &emptypb.Empty{}); err != nil {
			return err
		}
		return tcc.CallBranch(req, grpcURL("TransInTccNested"), grpcURL("TransInNestedConfirm"), grpcURL("TransInNestedCancel"), &emptypb.Empty{})
	})
	noErr(t, "TccGlobalTransaction", err)
	waitStatus(t, gid, "succeed", 10*time.Second)
	equalList(t, "confirms", phase2Calls(gid, "confirm"),
		[]string{"TransInConfirm@0201", "TransInNestedConfirm@02", "TransOutConfirm@01"})
	wantBalances(t, "postgres", from, to, 9970, 10030)
}

func TestTccGrpcCancel(t *testing.T) {
	needStore(t, "postgres")
	from, to := newUsers(t)
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	script(gid, "TransInTry", dtmcli.ResultFailure)
	req := pb(&Req{Amount: 30, From: from, To: to, Store: "postgres"})
	err := dtmgrpc.TccGlobalTransaction(dtmGrpc, gid, func(tcc *dtmgrpc.TccGrpc) error {
		if err := tcc.CallBranch(req, grpcURL("TransOutTry"), grpcURL("TransOutConfirm"), grpcURL("TransOutCancel"), &emptypb.Empty{}); err != nil {
			return err
		}
		return tcc.CallBranch(req, grpcURL("TransInTry"), grpcURL("TransInConfirm"), grpcURL("TransInCancel"), &emptypb.Empty{})
	})
	if !errors.Is(dtmgrpc.GrpcError2DtmError(err), dtmcli.ErrFailure) {
		t.Fatalf("TccGlobalTransaction returned %v, not the try's FAILURE", err)
	}
	waitStatus(t, gid, "failed", 10*time.Second)
	equalList(t, "cancels", phase2Calls(gid, "cancel"), []string{"TransInCancel@02", "TransOutCancel@01"})
	wantBalances(t, "postgres", from, to, 10000, 10000)
}

// The app dies after its first try, before Submit: once TimeoutToFail has passed the
// coordinator aborts the TCC and cancels the branch that was tried.
func TestTccHTTPAppGoneTimesOut(t *testing.T) {
	needStore(t, "mysql")
	from, to := newUsers(t)
	gid := newGid(t)
	tcc := &dtmcli.Tcc{TransBase: *dtmimp.NewTransBase(gid, "tcc", dtmHTTP, "")}
	tcc.TimeoutToFail = 1
	tcc.RetryInterval = 1
	noErr(t, "prepare", dtmimp.TransCallDtm(&tcc.TransBase, "prepare"))
	_, err := tcc.CallBranch(&Req{Amount: 30, From: from, To: to, Store: "mysql"},
		busiHTTP+"/TransOutTry", busiHTTP+"/TransOutConfirm", busiHTTP+"/TransOutCancel")
	noErr(t, "try", err)
	equal(t, "balance after the try", balance(t, "mysql", from), 9970)
	// no Submit, no Abort: the app is gone
	trans := waitStatus(t, gid, "failed", 15*time.Second)
	equalList(t, "branches", branchStatuses(trans), []string{"01/cancel:succeed", "01/confirm:prepared"})
	equalList(t, "cancels", phase2Calls(gid, "cancel"), []string{"TransOutCancel@01"})
	wantBalances(t, "mysql", from, to, 10000, 10000)
}
